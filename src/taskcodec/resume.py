"""Resume checkpoints: a training job's whole state, so a killed job continues where it stopped.

A resume checkpoint holds the fingerprint of the params and data it was written
for, the state dicts of the job's stateful objects (model, optimizers,
objective), the random-number generator states (the training's own generator,
PyTorch's global one and CUDA's when present) of every training process
(:mod:`taskcodec.distributed`: the processes share the rest, and the main one
writes the file) and the loop's progress record. Everything in it is tensors
and plain types, so it loads with ``torch.load(weights_only=True)``. It is used
only when the fingerprint and the number of processes match, so changed params
or data, or another ``tasks`` count, start afresh; so does a file that cannot
be loaded (e.g. written by an older version that pickled objects).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from taskcodec import artifacts, distributed
from taskcodec.errors import UserError


def params_fingerprint(params: dict[str, Any]) -> str:
    """Stable hash of a params dict; a resume checkpoint is used only if it matches."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def save_resume(path: Path, fingerprint: str, stateful: dict[str, Any], generator: torch.Generator,
                progress: dict[str, Any]) -> None:
    """Write the state dict of every ``stateful`` object (by name), every process's RNG states and ``progress``
    (tensors and plain types only) atomically; with several processes, every one calls it and the main one
    writes."""
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {}
    rng_states = distributed.gathered({"generator": generator.get_state(), "torch": torch.get_rng_state(), **cuda})
    if distributed.is_main():
        artifacts.save_checkpoint(path, {
            "fingerprint": fingerprint, **{name: obj.state_dict() for name, obj in stateful.items()},
            "rng_states": rng_states, "progress": progress,
        })
    distributed.barrier()  # no process ends (e.g. after SIGTERM) before the file is complete


def load_resume(path: Path, fingerprint: str, stateful: dict[str, Any], generator: torch.Generator) -> Any | None:
    """Restore what :func:`save_resume` wrote into ``stateful`` and this process's RNGs, and return its
    ``progress``; None (nothing restored) when there is no usable checkpoint or it was written for another
    fingerprint or number of processes."""
    if not path.is_file():
        return None
    try:
        saved = artifacts.load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
    except UserError as err:
        distributed.write(f"not resuming, training from the start: {err}")
        return None
    if saved.get("fingerprint") != fingerprint or "rng_states" not in saved:  # other params or an older format
        return None
    if len(saved["rng_states"]) != distributed.world_size():
        distributed.write(f"not resuming {path}: {len(saved['rng_states'])} training processes wrote it, this run "
                          f"has {distributed.world_size()}; training from the start")
        return None
    for name, obj in stateful.items():
        obj.load_state_dict(saved[name])
    rng = saved["rng_states"][distributed.rank()]
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return saved["progress"]

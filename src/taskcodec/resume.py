"""Resume checkpoints: a training job's whole state, so a killed job continues where it stopped.

A resume checkpoint holds the fingerprint of the params and data it was written
for, the state dicts of the job's stateful objects (model, optimizers,
objective), the random-number generator states (the training's own generator,
PyTorch's global one and CUDA's when present) and the loop's progress record.
Everything in it is tensors and plain types, so it loads with
``torch.load(weights_only=True)``. It is used only when the fingerprint
matches, so changed params or data start afresh; so does a file that cannot be
loaded (e.g. written by an older version that pickled objects).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from taskcodec import artifacts
from taskcodec.errors import UserError


def params_fingerprint(params: dict[str, Any]) -> str:
    """Stable hash of a params dict; a resume checkpoint is used only if it matches."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def save_resume(path: Path, fingerprint: str, stateful: dict[str, Any], generator: torch.Generator,
                progress: dict[str, Any]) -> None:
    """Write the state dict of every ``stateful`` object (by name), the RNG states and ``progress`` (tensors and
    plain types only) atomically."""
    cuda = {"cuda_rng_states": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {}
    artifacts.save_checkpoint(path, {
        "fingerprint": fingerprint, **{name: obj.state_dict() for name, obj in stateful.items()},
        "generator_state": generator.get_state(), "torch_rng_state": torch.get_rng_state(), **cuda,
        "progress": progress,
    })


def load_resume(path: Path, fingerprint: str, stateful: dict[str, Any], generator: torch.Generator) -> Any | None:
    """Restore what :func:`save_resume` wrote into ``stateful`` and the RNGs, and return its ``progress``;
    None (nothing restored) when there is no usable checkpoint or it was written for another fingerprint."""
    if not path.is_file():
        return None
    try:
        saved = artifacts.load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
    except UserError as err:
        tqdm.write(f"not resuming, training from the start: {err}")
        return None
    if saved.get("fingerprint") != fingerprint or "progress" not in saved:  # other params or an older format
        return None
    for name, obj in stateful.items():
        obj.load_state_dict(saved[name])
    generator.set_state(saved["generator_state"])
    torch.set_rng_state(saved["torch_rng_state"])
    if "cuda_rng_states" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng_states"])
    return saved["progress"]

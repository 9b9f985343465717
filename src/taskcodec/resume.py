"""Resume checkpoints: a training job's whole state, so a killed job continues where it stopped.

A resume checkpoint holds the fingerprint of the params and data it was written
for, the state dicts of the job's stateful objects (model, optimizers), both
random-number generator states and the loop's own progress record. It is used
only when the fingerprint matches, so changed params or data start afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from taskcodec import io


def params_fingerprint(params: dict[str, Any]) -> str:
    """Stable hash of a params dict; a resume checkpoint is used only if it matches."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def save_resume(path: Path, fingerprint: str, stateful: dict[str, Any], generator: torch.Generator,
                progress: Any) -> None:
    """Write the state dict of every ``stateful`` object (by name), the RNG states and ``progress`` atomically."""
    io.save_checkpoint(path, {
        "fingerprint": fingerprint, **{name: obj.state_dict() for name, obj in stateful.items()},
        "generator_state": generator.get_state(), "torch_rng_state": torch.get_rng_state(), "progress": progress,
    })


def load_resume(path: Path, fingerprint: str, stateful: dict[str, Any], generator: torch.Generator) -> Any | None:
    """Restore what :func:`save_resume` wrote into ``stateful`` and the RNGs, and return its ``progress``;
    None (nothing restored) when there is no checkpoint or it was written for another fingerprint."""
    if not path.is_file():
        return None
    saved = io.load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
    if saved.get("fingerprint") != fingerprint or "progress" not in saved:  # other params or an older format
        return None
    for name, obj in stateful.items():
        obj.load_state_dict(saved[name])
    generator.set_state(saved["generator_state"])
    torch.set_rng_state(saved["torch_rng_state"])
    return saved["progress"]

"""Resolve the ``device`` params value (``auto`` uses CUDA when present)."""

from __future__ import annotations

import torch

from taskcodec.errors import UserError


def resolve_device(name: str) -> torch.device:
    """Map ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` to a usable :class:`torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device '{name}' is not valid; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was requested but no CUDA GPU is available; use device: auto or cpu")
    return device

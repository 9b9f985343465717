"""Intermediate feature maps of a task model, read with a forward hook on a named module."""

from __future__ import annotations

import torch
from torch import nn

from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError


def feature_module(model: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer`` (dotted path, as in ``model.named_modules()``)."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        top = ", ".join(name for name, _ in model.named_children())
        raise UserError(f"task.features.layer '{layer}' is not a module of the task model; "
                        f"use one of its modules, e.g. {top}") from None


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, layer: str, batch_size: int,
                     device: torch.device) -> torch.Tensor:
    """Output of module ``layer`` for uint8 images N×3×H×W, in eval mode: a float tensor N×C×h×w on the CPU."""
    module = feature_module(model, layer)
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise UserError(f"task.features.layer '{layer}' returns {type(output).__name__}, not a tensor; "
                            "pick a module that outputs feature maps")
        captured.append(output.detach().float().cpu())

    handle = module.register_forward_hook(hook)
    model.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            model(to_float(images[start : start + batch_size], device))
    finally:
        handle.remove()
    return torch.cat(captured)

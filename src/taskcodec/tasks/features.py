"""Intermediate feature maps of a task model, read with a forward hook on a named module."""

from __future__ import annotations

from pathlib import Path

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
        raise UserError(f"tasks.<task>.features.layer '{layer}' is not a module of the task model; "
                        f"use one of its modules, e.g. {top}") from None


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, layer: str, batch_size: int,
                     device: torch.device) -> torch.Tensor:
    """Output of module ``layer`` for uint8 images N×3×H×W, in eval mode: a float tensor N×C×h×w on the CPU."""
    module = feature_module(model, layer)
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise UserError(f"tasks.<task>.features.layer '{layer}' returns {type(output).__name__}, not a tensor; "
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


class CachedFeatures:
    """The cached feature maps of a split (an ``extract_features`` file, from the task model at
    ``task_model_path``), compared with those of the task model's next forward pass: a hook on the cached layer
    keeps that pass's output until :meth:`mse_of_last_forward` reads it."""

    def __init__(self, path: Path, model: nn.Module, task_model_path: Path):
        from taskcodec import artifacts

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"task feature cache {self.path} is missing; run extract_features for this split first")
        record = artifacts.read_json(self.path.parent / "features.json")
        if record["task_model_sha256"] != artifacts.file_digest(task_model_path):
            raise UserError(f"task feature cache {self.path} was extracted with another task model than "
                            f"{task_model_path}; run extract_features again with it")
        cached = artifacts.load_checkpoint(self.path)
        self.features = cached["features"]
        self.row_of_image = {image_id: row for row, image_id in enumerate(cached["image_ids"])}
        self.last_output: torch.Tensor | None = None
        feature_module(model, cached["layer"]).register_forward_hook(self._capture_output)

    def _capture_output(self, _module, _inputs, output) -> None:
        self.last_output = output.detach().float().cpu()

    def mse_of_last_forward(self, image_id: str) -> float:
        """Mean squared difference between the features of the forward pass since the last call (one image)
        and the cached features of ``image_id``."""
        output, self.last_output = self.last_output, None
        if output is None or output.shape[0] != 1:
            raise RuntimeError("mse_of_last_forward needs one forward pass of a single image since its last call")
        if image_id not in self.row_of_image:
            raise UserError(f"task feature cache {self.path} has no image {image_id}; run extract_features again "
                            "on the same prepared data")
        cached = self.features[self.row_of_image[image_id]]
        if output.shape[1:] != cached.shape:
            raise UserError(f"task feature cache {self.path} holds {tuple(cached.shape)} features for image "
                            f"{image_id}, its reconstruction gives {tuple(output.shape[1:])}: the image size or "
                            "the task model differs from the extraction; run extract_features again")
        return float(((output[0] - cached) ** 2).mean())

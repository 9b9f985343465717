"""Classification metrics: cross-entropy, top-1 and (with at least five classes) top-5 accuracy."""

from __future__ import annotations

import math

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from taskcodec.data.tensors import to_float


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1).double().mean().item()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (top-5 is NaN with fewer than five classes)."""
    labels = labels.to(logits.device)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5) if logits.shape[1] >= 5 else math.nan,
    }


def finite_or_none(value: float) -> float | None:
    """``value``, or None for NaN (top-5 with fewer than five classes), for JSON files and MLflow."""
    return None if math.isnan(value) else value


def as_model_input(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; float tensors (latents) are moved as they are."""
    return to_float(tensor, device) if tensor.dtype == torch.uint8 else tensor.to(device, torch.float32)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], batch_size: int,
                   device: torch.device) -> torch.Tensor:
    """Eval-mode logits (on the CPU) of ``model`` over uint8 images, or over a tuple of input tensors
    (e.g. ŷ and σ̂) passed to the model side by side."""
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, inputs[0].shape[0], batch_size):
        chunks.append(model(*(as_model_input(t[start : start + batch_size], device) for t in inputs)).float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


@torch.no_grad()
def image_outputs(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Outputs (on the CPU) of the task ``model`` for one 8-bit RGB image H×W×3, as a reconstruction is measured."""
    x = to_float(torch.from_numpy(image).permute(2, 0, 1)[None], torch.device(device))
    return model(x)[0].float().cpu()

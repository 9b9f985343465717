"""A task model's outputs over a set or one image (:meth:`Task.apply`), and the classification metrics
(cross-entropy, top-1 and, with at least five classes, top-5 accuracy) of the compressed-domain classifiers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from taskcodec.data.tensors import to_float

if TYPE_CHECKING:
    from taskcodec.tasks.registry import Task


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


def take(targets: Any, index: torch.Tensor) -> Any:
    """The targets of the samples ``index``: rows of a tensor, or items of a list (one per sample)."""
    return targets[index] if isinstance(targets, torch.Tensor) else [targets[i] for i in index.tolist()]


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: Any, batch_size: int, device: torch.device, task: Task | None = None,
                   targets: Any = None) -> torch.Tensor:
    """Eval-mode outputs (on the CPU) of ``model`` over uint8 images, or over a tuple of inputs (e.g. ŷ and σ̂)
    passed to the model side by side, each a tensor or rows read when sliced (:class:`~taskcodec.data.sources.FileRows`,
    :class:`~taskcodec.codecs.cache.ShardRows`); with a ``task``, as :meth:`Task.apply` runs it on the
    inputs and their collated ``targets``."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, inputs[0].shape[0], batch_size):
        batch = tuple(as_model_input(t[start : start + batch_size], device) for t in inputs)
        if task is None:
            outputs = model(*batch)
        else:
            outputs = task.apply(model, batch, take(targets, torch.arange(start, start + len(batch[0]))))
        chunks.append(outputs.float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


@torch.no_grad()
def image_outputs(model: nn.Module, task: Task, image: np.ndarray, target: Any,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Outputs (on the CPU) of the ``task``'s ``model`` for one 8-bit RGB image H×W×3 with its
    :meth:`Task.target`, as a reconstruction is measured."""
    x = to_float(torch.from_numpy(image).permute(2, 0, 1)[None], torch.device(device))
    return task.apply(model, (x,), task.collate([target]))[0].float().cpu()

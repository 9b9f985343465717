"""SimCLR training (Chen et al., ICML 2020): two augmented views of every image, NT-Xent on their projections.

Every image of a batch of N gives two views, each drawn independently from the paper's augmentation family
(§3, Appendix A): a random resized crop (scale ``min_crop_scale`` … 1, resized to ``crop_size``), a horizontal
flip, colour jitter of strength s (brightness, contrast and saturation 0.8·s, hue 0.2·s; applied with probability
0.8) and grayscale with probability 0.2 — the CIFAR-10 recipe, without blur (Appendix B.9). They are
``torchvision.transforms.v2`` on tensors, applied image by image (a v2 transform draws one set of parameters per
call). No label is used.

The 2N projections go to the NT-Xent loss (normalised temperature-scaled cross-entropy, §2.1, equation 1) of
pytorch-metric-learning (``NTXentLoss``): views of the same image are the positive pairs, the other 2(N − 1)
views of the batch the negatives. Beside the loss the log has the view-matching top-1: how often a view's most
similar other view (cosine) in the batch is its partner (chance 1/(2N − 1)).

The optimiser is Adam (the paper's LARS is for batches of thousands) with a linear warm-up and a cosine decay
(§B.1); the loop is :func:`taskcodec.trainer.train` (resume after a kill, time budget, log), validating on the
val split with views fixed by the seed, so validations are comparable. The last weights are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from taskcodec.data.sources import FileRows, streamed
from taskcodec.data.tensors import to_float
from taskcodec.resume import params_fingerprint
from taskcodec.trainer import EpochObjective, Optimizers, Plan, StepLog, Trained, cosine, train, warmup

#: the columns of train_log.csv: a row per training step (split train) and per validation (split val)
LOG_FIELDS = ["step", "split", "loss", "top1", "aux_loss", "lr", "elapsed_s"]


def view_transform(params: dict[str, Any]) -> v2.Compose:
    """One random view of a float image (3×H×W in [0, 1]) → 3×``crop_size``×``crop_size`` (see the module docstring)."""
    s = params["jitter_strength"]
    return v2.Compose([
        v2.RandomResizedCrop(params["crop_size"], scale=(params["min_crop_scale"], 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ])


def two_views(images: torch.Tensor, transform: v2.Compose, device: torch.device) -> torch.Tensor:
    """The two views of every image of ``images`` (uint8 N×3×H×W): float 2N×3×c×c on ``device``, the first views of
    all images, then the second ones (drawn from PyTorch's global generator)."""
    images = to_float(images, torch.device("cpu"))
    views = [transform(image) for _ in range(2) for image in images]
    return torch.stack(views).to(device)


def nt_xent_loss(temperature: float) -> nn.Module:
    """NT-Xent of pytorch-metric-learning: ``loss(z, labels)`` with ``labels`` equal for the two views of an image."""
    from pytorch_metric_learning.losses import NTXentLoss

    return NTXentLoss(temperature=temperature)


def pair_labels(count: int, device: torch.device) -> torch.Tensor:
    """The labels of :func:`two_views`' 2·``count`` views: image i's two views are i and i + ``count``."""
    return torch.arange(count, device=device).repeat(2)


def view_match_top1(z: torch.Tensor) -> float:
    """The fraction of the 2N views whose most similar other view (cosine) is the other view of their image."""
    z = nn.functional.normalize(z.detach(), dim=1)
    similarity = z @ z.T
    similarity.fill_diagonal_(-torch.inf)
    count = len(z) // 2
    partner = torch.arange(len(z), device=z.device).add(count).remainder(len(z))
    return (similarity.argmax(dim=1) == partner).float().mean().item()


class ContrastiveObjective(EpochObjective):
    """NT-Xent on shuffled epochs of ``train`` (uint8 images, held or read from their files; ``batch_size``
    images, at most the set's size); validation: mean loss and view-matching top-1 over the full batches of
    ``val``, with the same views each time."""

    def __init__(self, model: nn.Module, params: dict[str, Any], train_images: torch.Tensor | FileRows,
                 val_images: torch.Tensor | FileRows, generator: torch.Generator, device: torch.device):
        super().__init__(len(train_images), params["batch_size"], generator, streamed([train_images]))
        self.model, self.params, self.device = model, params, device
        self.train_images, self.val_images = train_images, val_images
        self.transform = view_transform(params)
        self.loss = nt_xent_loss(params["temperature"])

    def _loss(self, images: torch.Tensor) -> tuple[torch.Tensor, float]:
        z = self.model(two_views(images, self.transform, self.device))
        return self.loss(z, pair_labels(len(images), self.device)), view_match_top1(z)

    def batch(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss, top1 = self._loss(self.train_images[self.indices(step)])
        return loss, {"top1": top1}

    def validate(self) -> dict[str, float]:
        size = min(self.params["batch_size"], len(self.val_images))
        losses, top1s = [], []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.params["seed"])
            for start in range(0, len(self.val_images) - size + 1, size):
                loss, top1 = self._loss(self.val_images[start:start + size])
                losses.append(loss.item())
                top1s.append(top1)
        return {"loss": sum(losses) / len(losses), "top1": sum(top1s) / len(top1s)}


def train_simclr(model: nn.Module, params: dict[str, Any], train_images: torch.Tensor | FileRows,
                 val_images: torch.Tensor | FileRows, device: torch.device, resume_path: Path, log_path: Path,
                 data_id: str = "", desc: str = "simclr") -> Trained:
    """Train ``model`` (:class:`~taskcodec.selfsupervised.models.SimCLR`) in place for ``params["steps"]`` steps
    or until ``time_budget_s`` seconds of training; 0 steps only validates (e.g. weights loaded from a file).

    Params (the ``simclr`` section): ``batch_size``, ``lr``, ``weight_decay``, ``lr_warmup`` (fraction of
    training), ``temperature``, the views' ``crop_size``, ``min_crop_scale`` and ``jitter_strength``,
    ``val_every`` and ``checkpoint_every`` (steps), ``time_budget_s`` and ``seed``. A rerun with the same params
    and ``data_id`` continues from ``resume_path``; the log goes to ``log_path``.
    """
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])
    objective = ContrastiveObjective(model, params, train_images, val_images, generator, device)
    plan = Plan(params["steps"], warmup(params["lr_warmup"], cosine(params["lr"])), params["val_every"],
                params["checkpoint_every"], params["time_budget_s"])
    return train(model, objective, Optimizers(optimizer), plan, StepLog(LOG_FIELDS), generator, device, resume_path,
                 params_fingerprint({"data": data_id, **params}), log_path, desc)

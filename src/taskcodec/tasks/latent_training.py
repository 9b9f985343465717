"""Compressed-domain classification from a latent cache (seed 004, §2.3: the frozen-encoder baseline).

The cache stage decodes ŷ and σ̂ from the real bitstreams — the receiver's side of the
entropy decoder, without the synthesis transform — and a latent classifier
(:mod:`~taskcodec.tasks.latent_models`) is trained on them with
:func:`~taskcodec.tasks.training.train_classifier`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from taskcodec.codecs.cache import LatentSet
from taskcodec.errors import UserError
from taskcodec.tasks.latent_models import build_latent_classifier
from taskcodec.tasks.registry import build_task
from taskcodec.tasks.training import LabeledSet, train_classifier
from taskcodec.trainer import Trained


def train_latent_classifier(model_params: dict, train_params: dict, train: LatentSet, val: LatentSet,
                            class_names: list[str], device: torch.device, resume_path: Path,
                            log_path: Path) -> tuple[torch.nn.Module, Trained]:
    """Build ``model_params["arch"]`` for the caches' latent channels and train it to classify them into
    ``class_names`` (the classification task); returns (model, what was trained)."""
    if train.y_hat.shape[1:] != val.y_hat.shape[1:]:
        raise UserError(f"train latents are {tuple(train.y_hat.shape[1:])} but val latents {tuple(val.y_hat.shape[1:])}; "
                        "cache both splits with the same codec and image size")
    model = build_latent_classifier(model_params, train.y_hat.shape[1], len(class_names))
    data_id = hashlib.sha256((train.summary["model_sha256"] + ":" + ",".join(train.image_ids)).encode()).hexdigest()
    state = train_classifier(model, train_params, LabeledSet((train.y_hat, train.scales_hat), train.labels),
                             LabeledSet((val.y_hat, val.scales_hat), val.labels),
                             build_task("classification", class_names), device, resume_path, log_path,
                             data_id=data_id[:16], desc="latent classifier")
    return model, state

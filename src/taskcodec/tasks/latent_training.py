"""Compressed-domain classification from a latent cache (seed 004, §2.3: the frozen-encoder baseline).

The cache stage decodes ŷ and σ̂ from the real bitstreams — the receiver's side of the
entropy decoder, without the synthesis transform — and a latent classifier
(:mod:`~taskcodec.tasks.latent_models`) is trained on them with the loop of
:mod:`~taskcodec.tasks.training`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from taskcodec import io
from taskcodec.errors import UserError
from taskcodec.tasks.labels import require_labels
from taskcodec.tasks.latent_models import build_latent_classifier
from taskcodec.tasks.training import LabeledSet, TrainState, train_classifier


@dataclass
class LatentSet:
    """Decoded latents of a cached dataset, in cache order."""

    image_ids: list[str]
    labels: torch.Tensor  # N, int64
    y_hat: torch.Tensor  # N×M×h×w
    scales_hat: torch.Tensor  # N×M×h×w
    summary: dict  # the cache's cache.json
    index: pd.DataFrame  # the cache's index.csv (actual and estimated bpp per image)

    def labeled(self) -> LabeledSet:
        return LabeledSet((self.y_hat, self.scales_hat), self.labels)


def read_latent_cache(cache_dir: str | os.PathLike) -> LatentSet:
    """Load every ``shard-*.pt`` of a cache written by ``cache_latents``; the images must be labeled."""
    cache_dir = Path(cache_dir)
    summary = io.read_json(cache_dir / "cache.json")
    shards = sorted(cache_dir.glob("shard-*.pt"))
    if not shards:
        raise UserError(f"{cache_dir} holds no decoded latents (shard-*.pt); rerun cache_latents without --no-latents "
                        "with a codec that has a latent decoder")
    parts = [torch.load(path, map_location="cpu", weights_only=False) for path in shards]
    if any("scales_hat" not in part for part in parts):
        raise UserError(f"{cache_dir} has no scales σ̂ (codec {summary['codec']}); compressed-domain classifiers "
                        "need a hyperprior codec such as bmshj2018-hyperprior")
    latents = LatentSet(
        image_ids=[image_id for part in parts for image_id in part["image_ids"]],
        labels=torch.cat([torch.as_tensor(part["labels"], dtype=torch.int64) for part in parts]),
        y_hat=torch.cat([part["y_hat"] for part in parts]).float(),
        scales_hat=torch.cat([part["scales_hat"] for part in parts]).float(),
        summary=summary,
        index=pd.read_csv(cache_dir / "index.csv", dtype={"image_id": str}),
    )
    require_labels(latents.labels, cache_dir)
    return latents


def same_codec(caches: dict[str, LatentSet]) -> dict:
    """The codec all ``caches`` (name → set) were written with; a :class:`UserError` if they differ."""
    digests = {name: latents.summary["model_sha256"] for name, latents in caches.items()}
    if len(set(digests.values())) != 1:
        raise UserError(f"the latent caches come from different codecs ({json.dumps(digests)}); "
                        "cache train, val and test with the same model.pt")
    summary = next(iter(caches.values())).summary
    return {key: summary[key] for key in ("model", "model_sha256", "codec", "N", "M", "lmbda")}


def train_latent_classifier(model_params: dict, train_params: dict, train: LatentSet, val: LatentSet, num_classes: int,
                            device: torch.device, resume_path: Path, log_path: Path) -> tuple[torch.nn.Module, TrainState]:
    """Build ``model_params["arch"]`` for the caches' latent channels and train it; returns (model, state)."""
    if train.y_hat.shape[1:] != val.y_hat.shape[1:]:
        raise UserError(f"train latents are {tuple(train.y_hat.shape[1:])} but val latents {tuple(val.y_hat.shape[1:])}; "
                        "cache both splits with the same codec and image size")
    model = build_latent_classifier(model_params, train.y_hat.shape[1], num_classes)
    data_id = hashlib.sha256((train.summary["model_sha256"] + ":" + ",".join(train.image_ids)).encode()).hexdigest()
    state = train_classifier(model, train_params, train.labeled(), val.labeled(), device, resume_path, log_path,
                             data_id=data_id[:16], desc="latent classifier")
    return model, state

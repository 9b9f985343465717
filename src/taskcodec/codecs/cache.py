"""Reading a latent cache written by the ``cache_latents`` stage.

A cache folder holds ``shard-NNNNN.tcbs`` (real bitstreams, one record per image
and layer; :mod:`taskcodec.codecs.bitstream`), ``shard-NNNNN.pt`` (ŷ and σ̂ per
layer decoded from those bytes, with the images' labels), ``index.csv`` (actual
bpp per image from the bytes, per layer and cumulative for layered codecs, and
the image's task fields: its label, a detection dataset's objects) and
``cache.json`` (the codec's identity and totals).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from taskcodec import artifacts
from taskcodec.codecs.bitstream import CorruptBitstream, ImageBitstream, check_header, read_shard
from taskcodec.data.sources import row_indices
from taskcodec.errors import UserError
from taskcodec.evaluation import read_table


def read_bitstreams(cache_dir: str | os.PathLike, layers: tuple[str, ...]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (image id, {layer: bitstream}) in cache order from every shard of ``cache_dir``.

    ``layers`` are the codec's; a single-layer shard's records belong to its only layer.
    """
    for shard_path in sorted(Path(cache_dir).glob("shard-*.tcbs")):
        current, parts = None, {}
        for image_id, layer, data in read_shard(shard_path):
            layer = layers[0] if layer is None else layer
            if layer not in layers:
                raise CorruptBitstream(f"{shard_path} holds layer '{layer}', which this codec does not have "
                                       f"({', '.join(layers)}); it was written by another model")
            if image_id != current and current is not None:
                yield current, parts
                parts = {}
            current = image_id
            parts[layer] = data
        if current is not None:
            yield current, parts


def cached_images(cache_dir: str | os.PathLike, model_path: str | os.PathLike, index: pd.DataFrame,
                  layers: tuple[str, ...]) -> Iterator[tuple[str, dict[str, ImageBitstream], dict[str, int]]]:
    """Yield (image id, {layer: bitstream}, {layer: its stored bytes}) of ``layers`` for every image of
    ``index``, validated before decoding.

    The cache must come from ``model_path`` (its SHA-256 in ``cache.json``); every header must agree with
    the index (image size) and the codec (layers, strings per layer); and the shards must hold exactly
    the index's images, so a deleted or cut shard is an error rather than a smaller result. Each failure
    is a :class:`CorruptBitstream` naming the path.
    """
    cache_dir = Path(cache_dir)
    summary = artifacts.read_json(cache_dir / "cache.json")
    advice = "delete the cache folder and rerun the cache stage"
    if summary["model_sha256"] != artifacts.file_digest(model_path):
        raise CorruptBitstream(f"{cache_dir} was written by {summary['model']}, not by {model_path} (another model "
                               f"of the same architecture does not decode it); cache with {model_path}")
    sizes = {image_id: (int(h), int(w)) for image_id, h, w in zip(index.index, index["height"], index["width"])}
    seen = set()
    for image_id, parts in read_bitstreams(cache_dir, tuple(summary["layers"])):
        where = f"{cache_dir}:{image_id}"
        if image_id not in sizes or image_id in seen:
            raise CorruptBitstream(f"{where} is {'a repeated' if image_id in seen else 'an unindexed'} image; {advice}")
        seen.add(image_id)
        if set(parts) != set(summary["layers"]):
            raise CorruptBitstream(f"{where} has layers {sorted(parts)}, expected {summary['layers']}; {advice}")
        bitstreams = {layer: ImageBitstream.from_bytes(parts[layer], where=f"{where}:{layer}") for layer in layers}
        for layer, bitstream in bitstreams.items():
            check_header(bitstream, sizes[image_id], summary["strings"][layer], f"{where}:{layer}", advice)
        yield image_id, bitstreams, {layer: len(parts[layer]) for layer in layers}
    missing = sorted(set(sizes) - seen)
    if missing:
        raise CorruptBitstream(f"{cache_dir} lacks the bitstreams of {len(missing)} of its {len(sizes)} indexed images "
                               f"(e.g. '{missing[0]}'): a shard is missing or cut; {advice}")


class ShardRows:
    """Rows of a tensor stored in parts, one per shard, indexed like their concatenation (by a slice or a tensor
    of indices) and gathered as float32 when indexed: with the shards mapped from their files
    (:func:`~taskcodec.artifacts.load_checkpoint` with ``mmap``), only the rows used are read."""

    def __init__(self, parts: list[torch.Tensor]):
        self.parts = parts
        self.starts = torch.tensor([0, *itertools.accumulate(len(part) for part in parts)])
        self.shape = torch.Size((int(self.starts[-1]), *parts[0].shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = torch.tensor(row_indices(index, len(self)), dtype=torch.int64)
        shards = torch.searchsorted(self.starts, rows, right=True) - 1
        return torch.stack([self.parts[shard][row - self.starts[shard]]
                            for shard, row in zip(shards.tolist(), rows.tolist())]).float()


@dataclass
class LatentSet:
    """Decoded latents of one layer of a cached dataset, in cache order: ŷ and σ̂ in memory, or
    :class:`ShardRows` read from the shards when indexed (``held`` says which, for the log)."""

    image_ids: list[str]
    labels: torch.Tensor  # N, int64
    y_hat: torch.Tensor | ShardRows  # N×C×h×w
    scales_hat: torch.Tensor | ShardRows  # N×C×h×w
    summary: dict  # the cache's cache.json
    index: pd.DataFrame  # the cache's index.csv (actual and estimated bpp per image)
    held: str = ""


def read_latent_cache(cache_dir: str | os.PathLike, budget_bytes: int | None = None) -> LatentSet:
    """The task layer's ŷ and σ̂ from every ``shard-*.pt`` of a cache (``cache.json`` names the layer): loaded
    into memory when the shards' bytes fit ``budget_bytes`` (None: no limit), else read from the mapped shards
    as they are indexed (:class:`ShardRows`)."""
    cache_dir = Path(cache_dir)
    summary = artifacts.read_json(cache_dir / "cache.json")
    shards = sorted(cache_dir.glob("shard-*.pt"))
    if not shards:
        raise UserError(f"{cache_dir} holds no decoded latents (shard-*.pt); rerun cache_latents without --no-latents "
                        "with a codec that has a latent decoder")
    layer = summary["task_layer"]
    size = sum(path.stat().st_size for path in shards)
    mapped = budget_bytes is not None and size > budget_bytes
    parts = [artifacts.load_checkpoint(path, map_location="cpu", mmap=mapped) for path in shards]
    if any(part["layers"][layer]["scales_hat"] is None for part in parts):
        raise UserError(f"{cache_dir} has no scales σ̂ (codec {summary['codec']}); compressed-domain classifiers "
                        "need a hyperprior codec such as bmshj2018-hyperprior")
    latents = {name: [part["layers"][layer][name] for part in parts] for name in ("y_hat", "scales_hat")}
    if mapped:
        latents = {name: ShardRows(tensors) for name, tensors in latents.items()}
        held = (f"read from its {len(shards)} shards as indexed ({size / 2**20:.0f} MB > the budget of "
                f"{budget_bytes / 2**20:.0f} MB)")
    else:
        latents = {name: torch.cat(tensors).float() for name, tensors in latents.items()}
        held = f"held in memory ({size / 2**20:.0f} MB of shards)"
    return LatentSet(
        image_ids=[image_id for part in parts for image_id in part["image_ids"]],
        labels=torch.cat([torch.as_tensor(part["labels"], dtype=torch.int64) for part in parts]),
        **latents, summary=summary, index=read_table(cache_dir / "index.csv"), held=held)


def same_codec(caches: dict[str, LatentSet]) -> dict:
    """The codec all ``caches`` (name → set) were written with; a :class:`UserError` if they differ."""
    digests = {name: latents.summary["model_sha256"] for name, latents in caches.items()}
    if len(set(digests.values())) != 1:
        raise UserError(f"the latent caches come from different codecs ({json.dumps(digests)}); "
                        "cache train, val and test with the same model.pt")
    summary = next(iter(caches.values())).summary
    return {key: summary[key] for key in ("model", "model_sha256", "codec", "arch", "hyper", "lmbda")}

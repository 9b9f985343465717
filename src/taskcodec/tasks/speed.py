"""Throughput of the two receivers of a bitstream: classify from latents, or decode pixels and classify.

Seed 004 (Gupta et al., "Learning-Based Compression for Machines", §1.2) motivates
compressed-domain models by the cost of decoding: the latent classifier needs only the
entropy decoder (ŷ and σ̂), while a pixel task model also needs the synthesis transform g_s.
:func:`compare_speed` times each part on the same bitstreams, batched, after a warm-up batch.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from compressai.models import CompressionModel
from torch import nn

from taskcodec.codecs.coding import LayeredBitstream, decode_images


def _timed(device: torch.device, fn: Callable[[], object]) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


@torch.no_grad()
def latent_classifier_throughput(classifier: nn.Module, y_hat: torch.Tensor, scales_hat: torch.Tensor,
                                 batch_size: int, device: torch.device) -> float:
    """Images per second of ``classifier`` on decoded latents (each batch read before it is timed: wall time of
    the classifier alone, after a warm-up)."""
    classifier.eval()
    classifier(y_hat[:batch_size].to(device), scales_hat[:batch_size].to(device))
    seconds = 0.0
    for start in range(0, len(y_hat), batch_size):
        y, s = y_hat[start : start + batch_size].to(device), scales_hat[start : start + batch_size].to(device)
        seconds += _timed(device, lambda: classifier(y, s))[0]
    return len(y_hat) / seconds


@torch.no_grad()
def compare_speed(codec: CompressionModel, classifier: nn.Module, task_model: nn.Module,
                  bitstreams: list[LayeredBitstream], batch_size: int, device: torch.device) -> dict[str, float]:
    """Seconds per part and images/s of both receivers for same-sized ``bitstreams`` of ``codec``.

    Latent path: entropy decoding to ŷ, σ̂ + ``classifier`` on the codec's task layer. Pixel path:
    entropy decoding + the codec's synthesis (batched, cropped to the image size) + ``task_model``.
    """
    for model in (codec, classifier, task_model):
        model.eval()
    first = next(iter(bitstreams[0].values()))
    height, width, layer = first.height, first.width, codec.task_layer()
    warm = decode_images(codec, bitstreams[:1], pixels=False).latents
    classifier(warm[layer].y_hat, warm[layer].scales_hat)
    task_model(codec.synthesize(warm)[..., :height, :width])
    seconds = {"entropy_decode": 0.0, "latent_classifier": 0.0, "synthesis": 0.0, "task_model": 0.0}
    for start in range(0, len(bitstreams), batch_size):
        batch = bitstreams[start : start + batch_size]
        spent, decoded = _timed(device, lambda: decode_images(codec, batch, pixels=False).latents)
        seconds["entropy_decode"] += spent
        seconds["latent_classifier"] += _timed(device, lambda: classifier(decoded[layer].y_hat,
                                                                          decoded[layer].scales_hat))[0]
        spent, x_hat = _timed(device, lambda: codec.synthesize(decoded)[..., :height, :width])
        seconds["synthesis"] += spent
        seconds["task_model"] += _timed(device, lambda: task_model(x_hat))[0]
    count = len(bitstreams)
    latent = seconds["entropy_decode"] + seconds["latent_classifier"]
    pixel = seconds["entropy_decode"] + seconds["synthesis"] + seconds["task_model"]
    return {
        "images": count, **{f"{part}_s": value for part, value in seconds.items()},
        "latent_images_per_s": count / latent, "pixel_images_per_s": count / pixel,
        "latent_only_images_per_s": count / seconds["latent_classifier"],
        "pixel_only_images_per_s": count / (seconds["synthesis"] + seconds["task_model"]),
        "speedup": pixel / latent,
    }

"""Training objectives.

:class:`RateDistortionLoss` is the rate–distortion Lagrangian of Ballé et al.,
"Variational Image Compression with a Scale Hyperprior" (ICLR 2018),
``L = R + λ·D``, with CompressAI's scaling conventions
(``compressai/losses/rate_distortion.py``): R in bits per pixel, D = 255²·MSE
or 1 − MS-SSIM. It differs from CompressAI's class in using an MS-SSIM whose
number of scales adapts to the patch size, so 64×64 training patches work.

The MSE distortion can be weighted per pixel (seed 003, saliency-guided
compression): with weights ``w`` (B×1×H×W) it is the weighted mean
``Σ w·(x̂ − x)² / Σ w`` over pixels and channels, so ``w ≡ 1`` is the plain
MSE. :func:`saliency_weights` makes ``w = floor + (1 − floor)·saliency`` so
that the background still counts when ``floor > 0``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from taskcodec.codecs.coding import pad
from taskcodec.errors import UserError
from taskcodec.metrics import ms_ssim


def _mse_distortion(x_hat: torch.Tensor, x: torch.Tensor,
                    weights: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    mse = F.mse_loss(x_hat, x)
    if weights is None:
        return 255.0**2 * mse, {"mse_loss": mse}
    weighted = weighted_mse(x_hat, x, weights)
    return 255.0**2 * weighted, {"mse_loss": mse.detach(), "weighted_mse": weighted}


def _ms_ssim_distortion(x_hat: torch.Tensor, x: torch.Tensor,
                        weights: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if weights is not None:
        raise UserError("per-pixel (saliency) weights work with distortion mse only; "
                        "set saliency_floor to null or distortion to mse")
    value = ms_ssim(x_hat, x, data_range=1.0)
    return 1.0 - value, {"ms_ssim": value, "mse_loss": F.mse_loss(x_hat.detach(), x)}


#: params ``distortion`` value → function returning (D, extra logged terms)
DISTORTIONS: dict[str, Callable] = {"mse": _mse_distortion, "ms-ssim": _ms_ssim_distortion}


def weighted_mse(x_hat: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ w·(x̂ − x)² / Σ w`` with B×1×H×W weights shared by the channels of B×C×H×W images."""
    if weights.dim() != 4 or weights.shape[1] != 1 or weights.shape[-2:] != x.shape[-2:] \
            or weights.shape[0] != x.shape[0]:
        raise ValueError(f"weights must be B×1×H×W for images {tuple(x.shape)}, got {tuple(weights.shape)}")
    weights = weights.to(x.dtype)
    total = weights.sum() * x.shape[1]
    return (weights * (x_hat - x).pow(2)).sum() / total.clamp_min(torch.finfo(x.dtype).tiny)


def saliency_weights(saliency: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-pixel distortion weights ``floor + (1 − floor)·s`` from uint8 (0–255) or float ([0, 1]) maps."""
    if not 0.0 <= floor <= 1.0:
        raise UserError(f"saliency_floor is {floor!r}; set it between 0 and 1, or to null for plain MSE")
    s = saliency.float() / 255.0 if saliency.dtype == torch.uint8 else saliency
    return floor + (1.0 - floor) * s


def bits_per_pixel(likelihoods: dict[str, dict[str, torch.Tensor]], num_pixels: int) -> torch.Tensor:
    """Estimated rate −Σ log₂ p over every entropy model of every layer (``{layer: {name: p}}``), per pixel."""
    return sum(torch.log(lk).sum() for per_layer in likelihoods.values() for lk in per_layer.values()) \
        / (-math.log(2) * num_pixels)


class RateDistortionLoss(nn.Module):
    """``loss = bpp + λ · D``; ``forward`` returns a dict with ``loss``, ``bpp_loss``, ``distortion`` and its terms.

    ``forward(output, target, weights)`` with B×1×H×W ``weights`` weights the
    MSE per pixel (see the module docstring); ``mse_loss`` stays the plain MSE.
    """

    def __init__(self, lmbda: float, distortion: str = "mse"):
        super().__init__()
        if distortion not in DISTORTIONS:
            raise UserError(f"unknown distortion '{distortion}'; use one of {', '.join(DISTORTIONS)}")
        self.lmbda = lmbda
        self.distortion = DISTORTIONS[distortion]

    def forward(self, output: dict, target: torch.Tensor,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch, _, height, width = target.shape
        bpp = bits_per_pixel(output["likelihoods"], batch * height * width)
        distortion, terms = self.distortion(output["x_hat"], target, weights)
        return {"loss": bpp + self.lmbda * distortion, "bpp_loss": bpp, "distortion": distortion, **terms}


class TaskAwareLoss(nn.Module):
    """``loss = R + τ·λ·D + w·L_task(task(x̂), targets)``, the joint objective of seed 000.

    Uselis, Ghosh and Inuganti, "Where's Waldo?: Visual Question Answering on
    Extreme Lossy Compressed Images using a Variational Approach with Scale
    Hyperprior": a scale-hyperprior codec is trained through a frozen task
    network applied to its reconstruction, with τ weighting the distortion
    (there L_task is the VQA loss). Here R and D are exactly
    :class:`RateDistortionLoss` at λ' = τ·λ, so τ = 1, w = 0 is the pretraining
    loss, and L_task is the ``task``'s own loss (:mod:`taskcodec.tasks.registry`;
    cross-entropy for classification; VQA's answer loss). ``task_model`` maps float images in
    [0, 1] to the task's outputs (:meth:`Task.apply`, which gives a VQA model the batch's questions from
    the targets); it is only read (the caller freezes it),
    gradients flow through it into the codec. ``forward(output, x, targets,
    weights)`` takes the codec's output on ``pad(x, pad_multiple)``
    (:func:`taskcodec.codecs.coding.pad` with the codec's ``pad_multiple``; a no-op
    when the sides are multiples of it): R and D are measured on the padded image
    as the coder sees it, the task model gets the reconstruction cropped to
    ``x``'s size and clamped to [0, 1], as a decoded image is. ``accuracy`` is the
    task's primary metric over the batch (:meth:`Task.summarize`: the mean top-1 of classification, the mAP of
    detection).
    """

    def __init__(self, lmbda: float, tau: float, task_model: nn.Module, task_weight: float, task,
                 distortion: str = "mse", pad_multiple: int = 64):
        super().__init__()
        self.pad_multiple = pad_multiple
        self.rate_distortion = RateDistortionLoss(tau * lmbda, distortion)
        self.task_model = task_model
        self.task_weight = task_weight
        self.task = task

    def forward(self, output: dict, x: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        multiple = self.pad_multiple
        losses = self.rate_distortion(output, pad(x, multiple), None if weights is None else pad(weights, multiple))
        x_hat = output["x_hat"][..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
        outputs = self.task.apply(self.task_model, (x_hat,), targets)
        task_loss = self.task.loss(outputs, targets)
        accuracy = torch.tensor(self.task.summarize(outputs.detach(), targets)[self.task.primary_metric])
        return {**losses, "loss": losses["loss"] + self.task_weight * task_loss, "rd_loss": losses["loss"],
                "task_loss": task_loss, "accuracy": accuracy}


class ScalableLoss(nn.Module):
    """``loss = R_b + R_e + λ_task·D(f, f̂) + λ_img·D(x, x̂)``, equation 2 of seed 002.

    Özyılkan et al., "Learned Disentangled Latent Representations for Scalable
    Image Coding for Humans and Machines" (DCC 2023): the rate of both layers,
    the distortion of the task features ``f`` reconstructed from the base layer
    (MSE of ``features_hat`` against ``features`` in the codec's output,
    :class:`taskcodec.codecs.scalable.ScalableHyperprior`) and the image
    distortion. ``R + λ_img·D(x, x̂)`` is exactly :class:`RateDistortionLoss`
    at ``λ_img``, so ``task_lmbda`` 0 is the plain rate–distortion loss of the
    two-layer codec. ``bpp_<layer>`` reports each layer's rate.
    """

    def __init__(self, lmbda: float, task_lmbda: float, distortion: str = "mse"):
        super().__init__()
        self.rate_distortion = RateDistortionLoss(lmbda, distortion)
        self.task_lmbda = task_lmbda

    def forward(self, output: dict, target: torch.Tensor,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        losses = self.rate_distortion(output, target, weights)
        feature_mse = F.mse_loss(output["features_hat"], output["features"])
        pixels = target.shape[0] * target.shape[-2] * target.shape[-1]
        per_layer = {f"bpp_{layer}": bits_per_pixel({layer: likelihoods}, pixels)
                     for layer, likelihoods in output["likelihoods"].items()}
        return {**losses, "loss": losses["loss"] + self.task_lmbda * feature_mse, "feature_mse": feature_mse,
                **per_layer}


class VariableRateLoss(nn.Module):
    """``loss = R_{≤k} + λ_k·D + β·λ_k·P`` at the operating point ``k`` a variable-rate codec was run at.

    One model serves several rates (seed 001: Sinha et al., "Self-Supervised
    Variable Rate Image Compression using Visual Attention"; CompressAI's
    variable-rate models): ``lmbdas`` holds one λ per operating point, ascending,
    and the trainer draws ``k`` per step (``output["point"]``; uniformly, or as
    the codec's ``point_weights`` say), so the expected loss is the weighted
    mean over points, the paper's equation 2 with α_k ∝ w_k·λ_k and
    β_k ∝ β·w_k·λ_k rising and the weight of each level's rate falling with the
    level (:mod:`taskcodec.codecs.pyramid`). ``R + λ_k·D`` is exactly
    :class:`RateDistortionLoss` at λ_k. ``P`` is 255²·MSE between the frozen
    network's features of x and x̂ (``features``, ``features_hat`` in the output)
    on the scale of D, so β weighs it against the pixel MSE; β = 0 drops it.
    An output that holds every point's (``points``, a codec trained on all its
    points at each step) gets that expectation itself: each term the mean of
    the points' terms weighted by ``point_weights`` (None: all alike).
    """

    def __init__(self, lmbdas: list[float], distortion: str = "mse", perceptual_weight: float = 0.0,
                 point_weights: tuple[float, ...] | None = None):
        super().__init__()
        if list(lmbdas) != sorted(lmbdas):
            raise UserError(f"the λ of a variable-rate codec's points must ascend, not {list(lmbdas)}")
        self.points = nn.ModuleList([RateDistortionLoss(lmbda, distortion) for lmbda in lmbdas])
        self.lmbdas, self.perceptual_weight = list(lmbdas), perceptual_weight
        self.point_weights = point_weights or (1.0,) * len(lmbdas)

    def forward(self, output: dict, target: torch.Tensor,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if "points" in output:
            at_points = [self.at_point(k, out, target, weights) for k, out in enumerate(output["points"])]
            total = sum(self.point_weights)
            return {key: sum(w * losses[key] for w, losses in zip(self.point_weights, at_points)) / total
                    for key in at_points[0]}
        return self.at_point(output["point"] if len(self.points) > 1 else 0, output, target, weights)

    def at_point(self, point: int, output: dict, target: torch.Tensor,
                 weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss terms of operating point ``point`` from that point's ``output``."""
        losses = self.points[point](output, target, weights)
        if self.perceptual_weight == 0:
            return losses
        if "features_hat" not in output:
            raise UserError("a perceptual weight needs a codec that computes features of x and x̂ "
                            "(the pyramid codec with its self-supervised network); set it to 0")
        perceptual = 255.0**2 * F.mse_loss(output["features_hat"], output["features"])
        loss = losses["loss"] + self.perceptual_weight * self.lmbdas[point] * perceptual
        return {**losses, "loss": loss, "perceptual": perceptual}

"""Training objectives.

:class:`RateDistortionLoss` is the rate–distortion Lagrangian of Ballé et al.,
"Variational Image Compression with a Scale Hyperprior" (ICLR 2018),
``L = R + λ·D``, with CompressAI's scaling conventions
(``compressai/losses/rate_distortion.py``): R in bits per pixel, D = 255²·MSE
or 1 − MS-SSIM. It differs from CompressAI's class in using an MS-SSIM whose
number of scales adapts to the patch size, so 64×64 training patches work.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from taskcodec.errors import UserError
from taskcodec.metrics import ms_ssim


def _mse_distortion(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    mse = F.mse_loss(x_hat, x)
    return 255.0**2 * mse, {"mse_loss": mse}


def _ms_ssim_distortion(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    value = ms_ssim(x_hat, x, data_range=1.0)
    return 1.0 - value, {"ms_ssim": value, "mse_loss": F.mse_loss(x_hat.detach(), x)}


#: params ``distortion`` value → function returning (D, extra logged terms)
DISTORTIONS: dict[str, Callable] = {"mse": _mse_distortion, "ms-ssim": _ms_ssim_distortion}


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate −Σ log₂ p over all entropy models, per pixel."""
    return sum(torch.log(lk).sum() for lk in likelihoods.values()) / (-math.log(2) * num_pixels)


class RateDistortionLoss(nn.Module):
    """``loss = bpp + λ · D``; ``forward`` returns a dict with ``loss``, ``bpp_loss`` and the distortion terms."""

    def __init__(self, lmbda: float, distortion: str = "mse"):
        super().__init__()
        if distortion not in DISTORTIONS:
            raise UserError(f"unknown distortion '{distortion}'; use one of {', '.join(DISTORTIONS)}")
        self.lmbda = lmbda
        self.distortion = DISTORTIONS[distortion]

    def forward(self, output: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = target.shape
        bpp = bits_per_pixel(output["likelihoods"], batch * height * width)
        distortion, terms = self.distortion(output["x_hat"], target)
        return {"loss": bpp + self.lmbda * distortion, "bpp_loss": bpp, "distortion": distortion, **terms}

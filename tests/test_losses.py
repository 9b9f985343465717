import math

import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.losses import RateDistortionLoss, bits_per_pixel


def test_bits_per_pixel_counts_all_entropy_models():
    likelihoods = {"y": torch.full((2, 4, 2, 2), 0.5), "z": torch.full((2, 4, 1, 1), 0.25)}
    # y: 32 symbols x 1 bit, z: 8 symbols x 2 bits = 48 bits over 2 images of 4x4 pixels
    assert bits_per_pixel(likelihoods, 2 * 4 * 4).item() == pytest.approx(48 / 32)


def test_mse_loss_is_rate_plus_lambda_times_scaled_mse():
    x = torch.zeros(1, 3, 8, 8)
    x_hat = torch.full_like(x, 0.1)
    output = {"x_hat": x_hat, "likelihoods": {"y": torch.full((1, 1, 8, 8), 0.5)}}
    losses = RateDistortionLoss(lmbda=0.01)(output, x)
    assert losses["bpp_loss"].item() == pytest.approx(1.0)
    assert losses["mse_loss"].item() == pytest.approx(0.01)
    assert losses["loss"].item() == pytest.approx(1.0 + 0.01 * 255**2 * 0.01, rel=1e-5)


def test_ms_ssim_loss_on_small_patches():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    output = {"x_hat": x.clone().requires_grad_(True), "likelihoods": {"y": torch.full((2, 1, 4, 4), 0.5)}}
    losses = RateDistortionLoss(lmbda=1.0, distortion="ms-ssim")(output, x)
    assert losses["ms_ssim"].item() == pytest.approx(1.0, abs=1e-5)
    assert math.isfinite(losses["loss"].item())


def test_unknown_distortion():
    with pytest.raises(UserError, match="unknown distortion"):
        RateDistortionLoss(0.01, "l1")

import math

import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.losses import RateDistortionLoss, bits_per_pixel, saliency_weights


def test_bits_per_pixel_counts_all_entropy_models_of_every_layer():
    likelihoods = {"base": {"y": torch.full((2, 4, 2, 2), 0.5)}, "enhancement": {"z": torch.full((2, 4, 1, 1), 0.25)}}
    # y: 32 symbols x 1 bit, z: 8 symbols x 2 bits = 48 bits over 2 images of 4x4 pixels
    assert bits_per_pixel(likelihoods, 2 * 4 * 4).item() == pytest.approx(48 / 32)


def test_mse_loss_is_rate_plus_lambda_times_scaled_mse():
    x = torch.zeros(1, 3, 8, 8)
    x_hat = torch.full_like(x, 0.1)
    output = {"x_hat": x_hat, "likelihoods": {"main": {"y": torch.full((1, 1, 8, 8), 0.5)}}}
    losses = RateDistortionLoss(lmbda=0.01)(output, x)
    assert losses["bpp_loss"].item() == pytest.approx(1.0)
    assert losses["mse_loss"].item() == pytest.approx(0.01)
    assert losses["loss"].item() == pytest.approx(1.0 + 0.01 * 255**2 * 0.01, rel=1e-5)


def test_ms_ssim_loss_on_small_patches():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    output = {"x_hat": x.clone().requires_grad_(True), "likelihoods": {"main": {"y": torch.full((2, 1, 4, 4), 0.5)}}}
    losses = RateDistortionLoss(lmbda=1.0, distortion="ms-ssim")(output, x)
    assert losses["ms_ssim"].item() == pytest.approx(1.0, abs=1e-5)
    assert math.isfinite(losses["loss"].item())


def test_unknown_distortion():
    with pytest.raises(UserError, match="unknown distortion"):
        RateDistortionLoss(0.01, "l1")


def _rd_case(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 8, 8, generator=generator)
    x_hat = (x + 0.1 * torch.randn(2, 3, 8, 8, generator=generator)).requires_grad_(True)
    return x, {"x_hat": x_hat, "likelihoods": {"main": {"y": torch.full((2, 1, 2, 2), 0.5)}}}


def test_unit_weights_give_the_plain_mse_loss():
    x, output = _rd_case()
    plain = RateDistortionLoss(0.01)(output, x)
    weighted = RateDistortionLoss(0.01)(output, x, torch.ones(2, 1, 8, 8))
    assert weighted["loss"].item() == pytest.approx(plain["loss"].item(), rel=1e-6)
    assert weighted["mse_loss"].item() == pytest.approx(plain["mse_loss"].item(), rel=1e-6)


def test_with_floor_zero_background_errors_cost_nothing():
    x = torch.zeros(1, 3, 8, 8)
    saliency = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    saliency[..., :4, :] = 255  # top half salient
    x_hat = x.clone()
    x_hat[..., 4:, :] = 0.5  # error only in the background
    output = {"x_hat": x_hat, "likelihoods": {"main": {"y": torch.full((1, 1, 2, 2), 0.5)}}}
    losses = RateDistortionLoss(0.01)(output, x, saliency_weights(saliency, 0.0))
    assert losses["distortion"].item() == 0.0 and losses["mse_loss"].item() > 0
    floored = RateDistortionLoss(0.01)(output, x, saliency_weights(saliency, 0.2))
    # background weight 0.2 of total weight 0.5·1 + 0.5·0.2: a sixth of the background error
    assert floored["weighted_mse"].item() == pytest.approx(0.5 * 0.25 * 0.2 / 0.6, rel=1e-6)


def test_saliency_weights():
    maps = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    assert saliency_weights(maps, 0.25).flatten().tolist() == [0.25, 1.0]
    assert saliency_weights(torch.tensor([[[[0.5]]]]), 0.0).item() == 0.5
    with pytest.raises(UserError, match="saliency_floor is 1.5"):
        saliency_weights(maps, 1.5)


def test_weights_need_the_mse_distortion():
    x, output = _rd_case()
    x = torch.rand(2, 3, 64, 64)
    output["x_hat"] = x.clone()
    with pytest.raises(UserError, match="mse only"):
        RateDistortionLoss(1.0, "ms-ssim")(output, x, torch.ones(2, 1, 64, 64))

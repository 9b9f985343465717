"""Tests for taskcodec.metrics: PSNR, MS-SSIM and Bjøntegaard deltas."""

import math

import numpy as np
import pytest
import pytorch_msssim
import torch

from taskcodec.metrics import (bd_or_reason, bd_quality, bd_rate, ms_ssim, ms_ssim_scales, ms_ssim_uint8, psnr,
                               psnr_batch, region_psnr)

METHODS = ["pchip", "cubic"]


def _smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [128 + 90 * np.sin(x / 9.0) * np.cos(y / 13.0), 2 * x + y, np.where(x > y, 200, 50)], axis=-1
    )
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


# --- PSNR -----------------------------------------------------------------


def test_psnr_of_constant_offset_one_is_10log10_255_squared():
    reference = _smooth_image(16, 16).clip(0, 254)
    assert psnr(reference, reference + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-12)
    assert psnr(reference, reference + 1) == pytest.approx(48.1308, abs=1e-4)


def test_psnr_does_not_wrap_uint8_and_matches_hand_mse():
    reference = np.zeros((2, 2, 3), np.uint8)
    test = reference.copy()
    test[0, 0, 0] = 255  # MSE = 255² / 12 even though 0 - 255 wraps in uint8
    assert psnr(reference, test) == pytest.approx(10 * math.log10(12), abs=1e-12)
    assert psnr(reference, test, data_range=1.0) == pytest.approx(10 * math.log10(12 / 255**2), abs=1e-12)


def test_psnr_identical_is_inf_and_shape_mismatch_raises():
    image = _smooth_image(8, 8)
    assert psnr(image, image.copy()) == math.inf
    with pytest.raises(ValueError):
        psnr(image, image[:4])


# --- MS-SSIM --------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "scales"),
    [(11, 1), (20, 1), (21, 2), (32, 2), (41, 3), (64, 3), (81, 4), (160, 4), (161, 5), (512, 5)],
)
def test_ms_ssim_scales_follows_window_rule(side, scales):
    assert ms_ssim_scales(side, 4 * side) == scales
    assert ms_ssim_scales(4 * side, side) == scales


def test_ms_ssim_scales_too_small_names_the_size():
    with pytest.raises(ValueError, match="10x30"):
        ms_ssim_scales(10, 30)


def test_ms_ssim_equals_pytorch_msssim_default_on_256():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 256, 256) * 255
    y = (x + 25 * torch.randn_like(x)).clamp(0, 255)
    expected = pytorch_msssim.ms_ssim(x, y, data_range=255)
    assert ms_ssim(x, y, data_range=255).item() == pytest.approx(expected.item(), abs=1e-6)
    assert ms_ssim(x, y, data_range=255).item() < 0.99


@pytest.mark.parametrize("side", [64, 32])
def test_ms_ssim_small_images_identical_is_one_and_noise_lowers_it(side):
    torch.manual_seed(1)
    x = torch.rand(1, 3, side, side)
    assert ms_ssim(x, x.clone(), data_range=1.0).item() == pytest.approx(1.0, abs=1e-6)
    scores = [
        ms_ssim(x, (x + s * torch.randn_like(x)).clamp(0, 1), data_range=1.0).item() for s in (0.02, 0.1, 0.3)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ms_ssim_gradients_flow_on_64():
    torch.manual_seed(2)
    target = torch.rand(2, 3, 64, 64)
    estimate = (target + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    loss = 1 - ms_ssim(estimate, target, data_range=1.0)
    loss.backward()
    assert estimate.grad is not None
    assert torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0


def test_ms_ssim_uint8_identical_noise_and_odd_size():
    image = _smooth_image(33, 47)
    assert ms_ssim_uint8(image, image.copy()) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(3)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (5, 20, 60)]
    scores = [ms_ssim_uint8(image, n) for n in noisy]
    assert 1.0 > scores[0] > scores[1] > scores[2]


# --- Bjøntegaard ----------------------------------------------------------

RATES = np.array([0.12, 0.25, 0.48, 0.91, 1.6])
PSNRS = np.array([27.1, 29.8, 32.4, 35.2, 37.9])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("factor", "expected"), [(0.5, -50.0), (2.0, 100.0), (1.0, 0.0)])
def test_bd_rate_of_scaled_rates_at_same_quality(method, factor, expected):
    assert bd_rate(RATES, PSNRS, factor * RATES, PSNRS, method=method) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_ignores_input_order(method):
    order = [3, 0, 4, 1, 2]
    shuffled = bd_rate(RATES[order], PSNRS[order], 0.8 * RATES[::-1], PSNRS[::-1], method=method)
    assert shuffled == pytest.approx(-20.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_and_bd_quality_analytic_linear_curves(method):
    # Anchor: Q = 30 + 4·ln R, sampled at Q = 30, 32, …, 40.
    # Test:   Q = 28 + 5·ln R, sampled at Q = 29, 31, …, 41.
    # BD-rate: common Q interval [30, 40]; ln R_test − ln R_anchor = (Q−28)/5 − (Q−30)/4
    # is linear in Q, so its mean is its value at Q = 35: 7/5 − 5/4 = 0.15,
    # giving (e^0.15 − 1)·100 %.
    # BD-quality: anchor ln R ∈ [0, 2.5], test ln R ∈ [0.2, 2.6] → common [0.2, 2.5];
    # Q_test − Q_anchor = −2 + ln R, mean at ln R = 1.35: −0.65 dB.
    q_anchor = np.arange(30.0, 41.0, 2.0)
    q_test = np.arange(29.0, 42.0, 2.0)
    r_anchor = np.exp((q_anchor - 30) / 4)
    r_test = np.exp((q_test - 28) / 5)
    assert bd_rate(r_anchor, q_anchor, r_test, q_test, method=method) == pytest.approx(
        (math.exp(0.15) - 1) * 100, abs=1e-6
    )
    assert bd_quality(r_anchor, q_anchor, r_test, q_test, method=method) == pytest.approx(-0.65, abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_bd_quality_of_one_db_offset(method):
    assert bd_quality(RATES, PSNRS, RATES, PSNRS + 1.0, method=method) == pytest.approx(1.0, abs=1e-9)
    assert bd_quality(RATES, PSNRS, RATES, PSNRS, method=method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_non_overlapping_curves_give_nan(method):
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, PSNRS + 20, method=method))
    assert math.isnan(bd_quality(RATES, PSNRS, RATES * 100, PSNRS, method=method))


def test_bd_or_reason_gives_the_value_or_says_why_there_is_none():
    assert bd_or_reason(bd_rate, RATES, PSNRS, RATES * 0.5, PSNRS) == (pytest.approx(-50.0), "")
    value, reason = bd_or_reason(bd_rate, RATES, PSNRS, RATES, PSNRS + 20)  # no shared range: NaN, nothing to fix
    assert math.isnan(value) and reason == ""
    value, reason = bd_or_reason(bd_rate, RATES, PSNRS, [0.2, 0.3, 0.4], [30.0, 30.0, 31.0])  # two λ on one PSNR
    assert math.isnan(value) and reason.startswith("quality values must be distinct")


def test_too_few_points_raise():
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(RATES[:3], PSNRS[:3], RATES, PSNRS, method="cubic")
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS, method="pchip")
    with pytest.raises(ValueError, match="at least 4"):  # the infinite PSNR point is dropped
        bd_quality([0.1, 0.2, 0.4, 9.0], [30, 33, 36, math.inf], RATES, PSNRS, method="cubic")


def test_infinite_quality_points_are_dropped():
    with_lossless = bd_rate(np.append(RATES, 8.0), np.append(PSNRS, math.inf), 0.5 * RATES, PSNRS)
    assert with_lossless == pytest.approx(-50.0, abs=1e-9)


def test_duplicate_quality_with_different_rates_raises_but_exact_duplicates_merge():
    with pytest.raises(ValueError, match="distinct"):
        bd_rate([0.1, 0.2, 0.3], [30.0, 30.0, 33.0], RATES, PSNRS)
    merged = bd_rate(np.append(RATES, RATES[0]), np.append(PSNRS, PSNRS[0]), 0.5 * RATES, PSNRS)
    assert merged == pytest.approx(-50.0, abs=1e-9)


def test_non_monotonic_curve_is_used_in_quality_order():
    # The third point has a lower rate than the second; the curve is kept as is.
    rates = RATES.copy()
    rates[2] = 0.2
    value = bd_rate(RATES, PSNRS, rates, PSNRS, method="pchip")
    assert math.isfinite(value) and value < 0


def test_bad_method_and_rates_raise():
    with pytest.raises(ValueError, match="method"):
        bd_rate(RATES, PSNRS, RATES, PSNRS, method="akima")
    with pytest.raises(ValueError, match="positive"):
        bd_rate(np.append(RATES, 0.0), np.append(PSNRS, 40.0), RATES, PSNRS)


def test_psnr_batch_matches_psnr_per_image():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    values = psnr_batch(x, y)
    assert values.shape == (3,)
    for i in range(3):
        expected = psnr(x[i].numpy(), y[i].numpy(), data_range=1.0)
        assert values[i].item() == pytest.approx(expected, rel=1e-6)


def test_region_psnr_inside_and_outside_a_mask():
    reference = np.zeros((4, 4, 3), dtype=np.uint8)
    test = reference.copy()
    test[:2] = 10  # error 10 in the top half
    test[2:] = 1  # error 1 in the bottom half
    saliency = np.zeros((4, 4))
    saliency[:2] = 0.9
    inside, outside = region_psnr(reference, test, saliency >= 0.5)
    assert inside == pytest.approx(10 * math.log10(255**2 / 100))
    assert outside == pytest.approx(10 * math.log10(255**2 / 1))
    assert region_psnr(reference, reference, saliency >= 0.5) == (math.inf, math.inf)


def test_region_psnr_of_an_empty_region_is_nan():
    reference = np.zeros((4, 4), dtype=np.uint8)
    inside, outside = region_psnr(reference, reference + 5, np.ones((4, 4), dtype=bool))
    assert outside != outside and inside == pytest.approx(psnr(reference, reference + 5))
    with pytest.raises(ValueError, match="H×W mask"):
        region_psnr(reference, reference, np.ones((3, 4), dtype=bool))

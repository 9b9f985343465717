"""Image quality metrics and Bjøntegaard rate–distortion comparisons.

* PSNR: peak signal-to-noise ratio, ``10·log10(data_range² / MSE)``; also
  inside and outside a region such as a salient one (saliency ≥ threshold,
  cf. seed 003), :func:`region_psnr`.
* MS-SSIM: multi-scale structural similarity, Z. Wang, E. P. Simoncelli and
  A. C. Bovik, "Multiscale structural similarity for image quality
  assessment", Asilomar Conference on Signals, Systems and Computers, 2003.
  Computed with the building blocks of ``pytorch_msssim`` so that results on
  images large enough for five scales equal ``pytorch_msssim.ms_ssim``.
* BD-rate / BD-PSNR: G. Bjøntegaard, "Calculation of average PSNR differences
  between RD-curves", ITU-T SG16 Q.6 VCEG document VCEG-M33, Austin, 2001
  (cubic polynomial fit), and the piecewise cubic Hermite (PCHIP) variant
  used by JCT-VC/JVET common test conditions (F. Bossen, "Common test
  conditions and software reference configurations", JCTVC-L1100, 2013;
  F. N. Fritsch and R. E. Carlson, "Monotone piecewise cubic interpolation",
  SIAM J. Numer. Anal. 17(2), 1980).
"""

import math

import numpy as np
import torch
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from scipy.interpolate import PchipInterpolator

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents from Wang et al. (2003), finest scale first."""

_WIN_SIGMA = 1.5
_BD_METHODS = ("pchip", "cubic")


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two same-shape arrays.

    The mean squared error is computed in float64 (so uint8 inputs cannot
    wrap around); identical arrays give ``math.inf``.
    """
    if reference.shape != test.shape:
        raise ValueError(f"PSNR needs same-shape arrays, got {reference.shape} and {test.shape}")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def region_psnr(reference: np.ndarray, test: np.ndarray, mask: np.ndarray,
                data_range: float = 255.0) -> tuple[float, float]:
    """PSNR in dB over the pixels where ``mask`` is true and over the rest, as (inside, outside).

    ``reference`` and ``test`` are H×W or H×W×C; ``mask`` is H×W (e.g.
    ``saliency >= threshold``), all channels of a pixel count. An empty region
    gives ``math.nan``; a region without error gives ``math.inf``.
    """
    if reference.shape != test.shape or mask.shape != reference.shape[:2]:
        raise ValueError(f"region PSNR needs same-shape images and an H×W mask, got {reference.shape}, "
                         f"{test.shape} and {mask.shape}")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    squared = (diff * diff).reshape(mask.shape + (-1,))
    results = []
    for region in (mask.astype(bool), ~mask.astype(bool)):
        if not region.any():
            results.append(math.nan)
            continue
        mse = float(squared[region].mean())
        results.append(math.inf if mse == 0.0 else 10.0 * math.log10(data_range * data_range / mse))
    return results[0], results[1]


def psnr_batch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of two B×C×H×W tensors (floats, ``data_range`` peak)."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def ms_ssim_scales(height: int, width: int, win_size: int = 11) -> int:
    """Largest number of MS-SSIM scales (at most 5) usable for an image size.

    Each scale halves the image, and the Gaussian window must still fit at
    the coarsest scale; ``pytorch_msssim`` states this as
    ``min(height, width) > (win_size - 1) * 2 ** (scales - 1)``.
    Raises ValueError when not even a single scale fits.
    """
    smaller_side = min(height, width)
    for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
        if smaller_side > (win_size - 1) * 2 ** (scales - 1):
            return scales
    raise ValueError(
        f"image of size {height}x{width} is too small for MS-SSIM with an "
        f"{win_size}-pixel window (smaller side must exceed {win_size - 1})"
    )


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Differentiable MS-SSIM of two NCHW float batches, averaged over the batch.

    Uses as many scales as the image size allows (see :func:`ms_ssim_scales`)
    with the standard weights truncated to that many scales and rescaled to
    the total of the five published weights, so small training crops (e.g.
    64×64, three scales) work. The published weights sum to 1.0001 rather
    than 1; keeping that total means five scales reproduce
    ``pytorch_msssim.ms_ssim`` (default arguments) exactly. Its size
    assertion always assumes five scales, which is why the per-scale loop is
    written here around its ``_ssim`` kernel.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ms_ssim needs two NCHW tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    win_size = 11
    scales = ms_ssim_scales(x.shape[-2], x.shape[-1], win_size)
    weights = x.new_tensor(MS_SSIM_WEIGHTS[:scales])
    weights = weights * (sum(MS_SSIM_WEIGHTS) / weights.sum())
    win = _fspecial_gauss_1d(win_size, _WIN_SIGMA).repeat([x.shape[1], 1, 1, 1])

    factors = []
    for level in range(scales):
        ssim_per_channel, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False)
        if level < scales - 1:
            factors.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    per_channel = torch.prod(torch.stack(factors, dim=0) ** weights.view(-1, 1, 1), dim=0)
    return per_channel.mean()


def ms_ssim_uint8(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of two HxWx3 uint8 images (data range 255), computed in float64."""
    if reference.shape != test.shape or reference.ndim != 3:
        raise ValueError(
            f"ms_ssim_uint8 needs two HxWxC images of equal shape, got {reference.shape} and {test.shape}"
        )

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        # channels first in memory too: pytorch_msssim's grouped Gaussian convolutions run two to three times slower
        # on the channels-last view that permute() alone gives (64² to 768×512 images; the same values, to rounding)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float64)).unsqueeze(0)

    with torch.no_grad():
        return float(ms_ssim(to_tensor(reference), to_tensor(test), data_range=255.0))


def _clean_curve(x, y, x_name: str, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort an RD curve by its independent variable ``x`` and validate it.

    Points where either coordinate is non-finite (e.g. an infinite PSNR of a
    lossless point) are dropped, exact duplicate points are merged, and the
    remaining ``x`` must be strictly increasing. ``y`` may be non-monotonic:
    the points are simply kept in ``x`` order and the fit passes through them.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"rate and quality lists differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    points = np.unique(np.stack([x[keep], y[keep]], axis=1), axis=0)  # sorted by x, then y
    if len(points) < min_points:
        raise ValueError(f"need at least {min_points} finite distinct RD points per curve, got {len(points)}")
    if np.any(np.diff(points[:, 0]) <= 0):
        raise ValueError(f"{x_name} values must be distinct; a curve has two points with the same {x_name}")
    return points[:, 0], points[:, 1]


def _log_rates(rate) -> np.ndarray:
    rate = np.asarray(rate, dtype=np.float64)
    if np.any(rate <= 0):
        raise ValueError("rates must be positive to take their logarithm")
    return np.log(rate)


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of the fitted curve y(x) over [lo, hi], integrated exactly."""
    if method == "cubic":
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        integral = np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo)
    else:
        integral = PchipInterpolator(x, y, extrapolate=False).integrate(lo, hi)
    return float(integral) / (hi - lo)


def _bd_difference(x_anchor, y_anchor, x_test, y_test, x_name: str, method: str) -> float:
    """Mean of (test − anchor) of y as a function of x over the common x range."""
    if method not in _BD_METHODS:
        raise ValueError(f"unknown Bjøntegaard method {method!r}; use one of {', '.join(_BD_METHODS)}")
    min_points = 4 if method == "cubic" else 2
    xa, ya = _clean_curve(x_anchor, y_anchor, x_name, min_points)
    xt, yt = _clean_curve(x_test, y_test, x_name, min_points)
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if lo >= hi:
        return math.nan
    return _mean_over(xt, yt, lo, hi, method) - _mean_over(xa, ya, lo, hi, method)


def bd_rate(rate_anchor, quality_anchor, rate_test, quality_test, method: str = "pchip") -> float:
    """Bjøntegaard delta rate of ``test`` versus ``anchor`` in percent.

    Log-rate is fitted as a function of quality for each curve (``"cubic"``:
    third-degree polynomial least-squares fit as in VCEG-M33, needs at least
    4 points per curve; ``"pchip"``: piecewise cubic Hermite interpolation
    as in the JCT-VC/JVET tools, needs at least 2 points). Both fits are
    integrated exactly over the overlapping quality interval, and the mean
    log-rate difference ``d`` is reported as ``(exp(d) − 1)·100``: negative
    means the test codec needs fewer bits for the same quality.

    Points with a non-finite rate or quality (e.g. infinite PSNR) are dropped;
    each curve is sorted by quality, whose values must be distinct. A curve
    whose rate is not monotonic in quality is kept in quality order as given.
    Returns ``math.nan`` when the quality ranges do not overlap (or touch in a
    single value), since no common interval exists to average over.
    """
    diff = _bd_difference(
        quality_anchor, _log_rates(rate_anchor), quality_test, _log_rates(rate_test), "quality", method
    )
    return (math.exp(diff) - 1.0) * 100.0 if math.isfinite(diff) else math.nan


def bd_quality(rate_anchor, quality_anchor, rate_test, quality_test, method: str = "pchip") -> float:
    """Bjøntegaard delta quality (BD-PSNR when quality is PSNR) of test vs anchor.

    Quality is fitted as a function of log-rate with the same methods as
    :func:`bd_rate` and the mean difference (test − anchor) over the
    overlapping log-rate interval is returned in quality units: positive
    means the test codec has higher quality at the same rate. Same cleaning
    rules as :func:`bd_rate`, with the roles swapped (curves sorted by rate,
    rates must be distinct, non-monotonic quality kept in rate order);
    returns ``math.nan`` when the rate ranges do not overlap.
    """
    return _bd_difference(
        _log_rates(rate_anchor), quality_anchor, _log_rates(rate_test), quality_test, "rate", method
    )


def bd_or_reason(function, rate_anchor, quality_anchor, rate_test, quality_test,
                 method: str = "pchip") -> tuple[float, str]:
    """``function`` (:func:`bd_rate` or :func:`bd_quality`) of test against anchor, and ``""``; or NaN and why
    it cannot exist when a curve cannot be fitted (e.g. an under-trained sweep with two λ on one PSNR has no
    rate as a function of PSNR). NaN with ``""``: the curves share no range."""
    try:
        return function(rate_anchor, quality_anchor, rate_test, quality_test, method=method), ""
    except ValueError as err:
        return math.nan, str(err)

"""The redundancy metric (seed 002, Section 5) on synthetic latents with known dependence."""

import math

import pytest
import torch

from taskcodec.redundancy import fibres, uncertainty_coefficients

B, C, H, W = 16, 8, 16, 16  # 4096 fibre pairs
CLUSTERS = 16


def mixture_latent(seed: int, channels: int = C) -> torch.Tensor:
    """A latent whose fibres come from 16 equiprobable, well-separated Gaussian clusters (H = 4 bits)."""
    g = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(CLUSTERS, channels, generator=g)
    labels = torch.randint(0, CLUSTERS, (B, H, W), generator=g)
    return centres[labels].permute(0, 3, 1, 2) + torch.randn(B, channels, H, W, generator=g)


def noise(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def linear_map(y: torch.Tensor, out_channels: int, seed: int) -> torch.Tensor:
    """A fixed random (non-orthogonal) linear map of each fibre to ``out_channels`` channels."""
    matrix = noise((out_channels, y.shape[1]), seed)
    return torch.einsum("dc,bchw->bdhw", matrix, y)


def test_fibres_are_the_channel_vectors_at_each_position():
    y = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    f = fibres(y)
    assert f.shape == (2 * 4 * 5, 3)
    assert torch.equal(f[1 * 20 + 2 * 5 + 3], y[1, :, 2, 3])


def test_entropies_are_consistent_and_in_bits():
    r = uncertainty_coefficients(mixture_latent(0), linear_map(mixture_latent(0), 12, seed=1), clusters=CLUSTERS)
    assert r["samples"] == B * H * W
    # 16 equiprobable clusters: H = log2(16) = 4 bits up to sampling
    assert 3.95 < r["h_base"] <= 4.0 and 3.9 < r["h_enh"] <= 4.0
    assert r["mutual_information"] == pytest.approx(r["h_base"] - r["h_base_given_enh"])
    assert r["mutual_information"] == pytest.approx(r["h_enh"] - r["h_enh_given_base"])
    assert r["u_base_given_enh"] == pytest.approx(r["mutual_information"] / r["h_base"])


@pytest.mark.parametrize(("make_base", "n_init"), [(mixture_latent, 4), (lambda seed: noise((B, C, H, W), seed), 1)],
                         ids=["clustered", "gaussian"])
def test_independent_latents_are_not_redundant(make_base, n_init):
    # measured: 0.0100 (clustered) and 0.0095 (gaussian) both ways, all of it the plug-in bias
    # (K-1)^2 / (2 N ln 2) = 0.040 bits of 4 bits, i.e. 0.010
    r = uncertainty_coefficients(make_base(0), noise((B, 12, H, W), 1), clusters=CLUSTERS, n_init=n_init)
    assert r["u_base_given_enh"] < 0.02 and r["u_enh_given_base"] < 0.02
    assert r["mutual_information"] < 0.08


def test_a_deterministic_function_is_fully_redundant():
    # Y2 = A·Y1 with a fixed non-orthogonal 12×8 matrix, so the channel counts differ too;
    # measured 1.0 both ways (0.97 and 0.98 with a single k-means run, n_init=1)
    y_base = mixture_latent(0)
    r = uncertainty_coefficients(y_base, linear_map(y_base, 12, seed=1), clusters=CLUSTERS)
    assert r["u_enh_given_base"] > 0.98 and r["u_base_given_enh"] > 0.98


def test_redundancy_decreases_with_the_noise_on_the_enhancement_latent():
    # Y2 = Y1 + σ·noise; measured U(Y2|Y1) 1.0, 0.986, 0.831, 0.376 for σ = 0.5, 2, 4, 8
    y_base = mixture_latent(0)
    sigmas = [0.5, 2.0, 4.0, 8.0]
    runs = [uncertainty_coefficients(y_base, y_base + s * noise(y_base.shape, 2), clusters=CLUSTERS) for s in sigmas]
    for key in ("u_enh_given_base", "u_base_given_enh", "mutual_information"):
        values = [r[key] for r in runs]
        assert all(a > b for a, b in zip(values, values[1:])), (key, values)
    assert runs[0]["u_enh_given_base"] > 0.99 and runs[-1]["u_enh_given_base"] < 0.5


def test_deterministic_for_a_seed_and_samples_are_drawn_by_it():
    y_base, y_enh = mixture_latent(0), noise((B, 4, H, W), 3) + mixture_latent(0)[:, :4]
    first = uncertainty_coefficients(y_base, y_enh, samples=1000, seed=5)
    assert first == uncertainty_coefficients(y_base, y_enh, samples=1000, seed=5)
    assert first["samples"] == 1000
    assert first != uncertainty_coefficients(y_base, y_enh, samples=1000, seed=6)


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # scikit-learn: fewer distinct points than clusters
def test_a_collapsed_latent_has_no_coefficient():
    r = uncertainty_coefficients(torch.zeros(2, 3, 8, 8), noise((2, 5, 8, 8), 0), clusters=4)
    assert r["h_base"] == 0.0 and r["mutual_information"] == 0.0
    assert math.isnan(r["u_base_given_enh"]) and r["u_enh_given_base"] == 0.0


@pytest.mark.parametrize(("y_base", "y_enh", "kwargs", "message"), [
    (torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 4, 4), {}, "batch sizes 2 and 3"),
    (torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), {}, r"same spatial size.*\(4, 4\) and \(4, 5\)"),
    (torch.zeros(3, 4, 4), torch.zeros(2, 3, 4, 4), {}, r"y_base must be a 4-D tensor B×C×h×w, got \(3, 4, 4\)"),
    (torch.zeros(2, 3, 4, 4), [[0.0]], {}, "y_enh must be a 4-D tensor B×C×h×w, got list"),
    (torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), math.nan), {}, "y_enh holds non-finite values"),
    (torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), {"clusters": 1}, "clusters must be at least 2"),
    (torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2), {"clusters": 16}, "at least clusters=16 fibre pairs, got 8"),
])
def test_bad_input_is_refused_with_a_clear_message(y_base, y_enh, kwargs, message):
    with pytest.raises(ValueError, match=message):
        uncertainty_coefficients(y_base, y_enh, **kwargs)

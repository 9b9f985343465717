"""CompressAI's variable-rate models under the codec contract: one model, several operating points, each
decoding from real bitstreams like CompressAI, with more bits at higher points once trained."""

import copy
import math

import pytest
import torch
from compressai.models import MeanScaleHyperpriorVbr, ScaleHyperpriorVbr
from compressai.optimizers import net_aux_optimizer

from taskcodec.codecs.bitstream import ImageBitstream
from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.coding import decode_images, encode_images, pad
from taskcodec.codecs.registry import CODECS, build_codec, codec_hyperparameters
from taskcodec.errors import UserError
from taskcodec.losses import RateDistortionLoss

ARCHS = ["bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr"]
HYPER = {"N": 16, "M": 24, "levels": 3}


def make_codec(arch, seed=0, **hyper):
    torch.manual_seed(seed)
    return build_codec(arch, {**HYPER, **hyper})


def images(n=1, seed=1):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def trained(arch, steps=30):
    """A tiny model after a few steps of R + λ_k·D on one fixed image, the point cycling, then update()."""
    model = make_codec(arch).train()
    x = images()
    optimizers = net_aux_optimizer(model, {"net": {"type": "Adam", "lr": 1e-3}, "aux": {"type": "Adam", "lr": 1e-3}})
    losses = [RateDistortionLoss(lmbda) for lmbda in model.lmbda]
    for step in range(steps):
        point = step % model.operating_points
        model.select_point(point)
        loss = losses[point](model(x), x)["loss"]
        optimizers["net"].zero_grad()
        loss.backward()
        optimizers["net"].step()
        optimizers["aux"].zero_grad()
        model.aux_loss().backward()
        optimizers["aux"].step()
    model.eval().update(force=True, update_quantiles=True)
    return model


@pytest.fixture(scope="module", params=ARCHS)
def trained_codec(request):
    return request.param, trained(request.param)


def y_bytes(model, x, point):
    model.select_point(point)
    return len(encode_images(model, x)[0]["main"].strings[0])


def test_registered_under_compressai_names_with_levels_as_a_hyperparameter():
    assert issubclass(CODECS["bmshj2018-hyperprior-vbr"], ScaleHyperpriorVbr)
    assert issubclass(CODECS["mbt2018-mean-vbr"], MeanScaleHyperpriorVbr)
    for arch in ARCHS:
        assert codec_hyperparameters(arch) == (["N", "M", "levels"], [])
    with pytest.raises(UserError, match="needs the hyperparameter 'levels'"):
        build_codec("mbt2018-mean-vbr", {"N": 16, "M": 24})
    with pytest.raises(UserError, match="at least one operating point"):
        make_codec("bmshj2018-hyperprior-vbr", levels=0)


def test_the_gains_follow_compressai_sqrt_of_lambda_over_the_largest():
    eight = make_codec("bmshj2018-hyperprior-vbr", levels=8)
    reference = ScaleHyperpriorVbr(N=16, M=24)
    assert torch.equal(eight.Gain, reference.Gain) and eight.lmbda == reference.lmbda  # CompressAI's own 8 points
    assert torch.allclose(reference.Gain, torch.tensor(reference.lmbda).div(reference.lmbda[-1]).sqrt(), atol=1e-4)
    three = make_codec("mbt2018-mean-vbr")
    assert three.operating_points == 3 and three.Gain.shape == (3,)
    assert three.lmbda[0] == pytest.approx(reference.lmbda[0]) and three.lmbda[-1] == pytest.approx(reference.lmbda[-1])
    assert torch.allclose(three.Gain, torch.tensor([0.1, math.sqrt(0.1), 1.0]))
    one = make_codec("mbt2018-mean-vbr", levels=1)
    assert one.operating_points == 1 and torch.equal(one.Gain, torch.tensor([1.0]))
    three.set_lambdas([0.0009, 0.0035, 0.18])
    assert torch.allclose(three.Gain, torch.tensor([0.0009, 0.0035, 0.18]).div(0.18).sqrt())
    with pytest.raises(UserError, match="3 positive ascending"):
        three.set_lambdas([0.18, 0.0035, 0.0009])


def test_select_point_out_of_range_raises():
    model = make_codec("bmshj2018-hyperprior-vbr")
    model.select_point(2)
    assert model.point == 2
    for wrong in (-1, 3):
        with pytest.raises(ValueError, match="operating points 0…2"):
            model.select_point(wrong)
    assert model.point == 2


def test_analyze_is_the_encoder_side_of_forward(trained_codec):
    model = copy.deepcopy(trained_codec[1]).train()  # trained: nonzero symbols, so the offsets count
    x = images(2)
    model.select_point(2)
    torch.manual_seed(3)
    out = model(x)
    torch.manual_seed(3)
    analyzed = model.analyze(x)
    y_hat = analyzed["latents"]["main"].y_hat
    assert torch.equal(model.g_s(y_hat), out["x_hat"])  # ŷ is deterministic: rounding, no noise
    for name in ("y", "z"):
        assert torch.equal(analyzed["likelihoods"]["main"][name], out["likelihoods"]["main"][name])
    y_hat.sum().backward()  # straight-through: the analysis gets a gradient
    assert model.g_a[0].weight.grad.abs().sum() > 0
    assert torch.equal(model(x, quantization="ste")["x_hat"], out["x_hat"])  # the VBR path has one proxy
    with pytest.raises(ValueError, match="quantization"):
        model(x, quantization="round")


def test_round_trip_through_real_bitstreams_at_every_point(trained_codec):
    _, model = trained_codec  # trained: an untrained model's latents all round to zero
    x = images(3)
    for point in range(model.operating_points):
        model.select_point(point)
        bitstreams = encode_images(model, x)
        parsed = [{"main": ImageBitstream.from_bytes(b["main"].to_bytes())} for b in bitstreams]
        decoded = decode_images(model, parsed)
        with torch.no_grad():
            forward = model(pad(x, model.pad_multiple))["x_hat"].clamp(0, 1)
            analyzed = model.analyze(x)["latents"]["main"]
            compressed = model.compress(x[:1], stage=2, s=point)
            reference = model.decompress(compressed["strings"], compressed["shape"], stage=2, s=point)["x_hat"]
        assert (decoded.x_hat - forward).abs().max() < 1e-4  # the eval-mode forward's rounding path
        assert torch.allclose(decoded.latents["main"].y_hat, analyzed.y_hat, atol=1e-5)
        assert torch.allclose(decoded.latents["main"].scales_hat, analyzed.scales_hat, atol=1e-5)
        # the layer holds CompressAI's strings, which decode as CompressAI's decompress does
        assert bitstreams[0]["main"].strings == [per_model[0] for per_model in compressed["strings"]]
        assert torch.allclose(decoded.x_hat[:1], reference, atol=1e-6)
        if point == model.operating_points - 1:  # nonzero symbols, so the reconstruction offsets count
            assert (decoded.latents["main"].y_hat != 0).float().mean() > 0.1
        for i, bitstream in enumerate(bitstreams):  # a batch decodes to the latents of each bitstream alone
            alone = decode_images(model, [bitstream])
            assert torch.equal(decoded.latents["main"].y_hat[i : i + 1], alone.latents["main"].y_hat)
            assert torch.equal(decoded.latents["main"].scales_hat[i : i + 1], alone.latents["main"].scales_hat)


def test_bits_rise_with_the_point_after_training(trained_codec):
    _, model = trained_codec
    sizes = [y_bytes(model, images(), point) for point in range(model.operating_points)]
    assert sizes == sorted(set(sizes)), sizes  # strictly increasing


def test_every_point_decodes_after_update_with_quantiles_and_only_at_its_own_gain(trained_codec):
    _, model = trained_codec
    x = images(2, seed=5)
    assert model.update(force=True, update_quantiles=True)  # again: the trainer's last call, then every point
    reconstructions = []
    for point in range(model.operating_points):
        model.select_point(point)
        decoded = decode_images(model, encode_images(model, x))
        with torch.no_grad():
            forward = model(x)["x_hat"].clamp(0, 1)
        assert (decoded.x_hat - forward).abs().max() < 1e-4
        reconstructions.append(decoded.x_hat)
    # the rate is not in the bitstream: the top point's bitstream read at another point's gain is another image
    bitstreams = encode_images(model, x)
    model.select_point(0)
    assert not torch.allclose(decode_images(model, bitstreams).x_hat, reconstructions[-1], atol=1e-3)


def test_update_fits_the_quantiles_as_compressai_update_quantiles_does():
    model = make_codec("bmshj2018-hyperprior-vbr")
    before = model.entropy_bottleneck.quantiles.detach().clone()
    model.update(force=True)
    assert torch.equal(model.entropy_bottleneck.quantiles, before)
    assert model.update(force=True, update_quantiles=True)
    assert not torch.equal(model.entropy_bottleneck.quantiles, before)
    assert model.update(force=True, scale=model.Gain[-1])  # CompressAI's VBR keyword still accepted


def test_checkpoint_round_trip_keeps_every_points_bitstreams(trained_codec, tmp_path):
    arch, model = trained_codec
    model = copy.deepcopy(model)  # the fixture's model stays as trained
    model.set_lambdas([0.001, 0.02, 0.18])  # gains in the state dict travel with it
    x = images(2, seed=7)
    before = []
    for point in range(model.operating_points):
        model.select_point(point)
        before.append([b["main"].strings for b in encode_images(model, x)])
    save_codec(tmp_path / "model.pt", model, arch, HYPER, 0.18, params={}, metrics={})
    loaded, meta = load_codec(tmp_path / "model.pt", expect_arch=arch)
    assert meta["codec_id"] == f"{arch}/N16-M24-levels3" and loaded.operating_points == 3
    assert torch.equal(loaded.Gain, model.Gain)
    for point in range(loaded.operating_points):
        loaded.select_point(point)
        assert [b["main"].strings for b in encode_images(loaded, x)] == before[point]
    assert torch.equal(type(model).from_state_dict(model.state_dict()).Gain, model.Gain)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_parameter_in_exactly_one_of_the_net_and_aux_optimizers(arch):
    model = make_codec(arch)
    optimizers = net_aux_optimizer(model, {"net": {"type": "Adam", "lr": 1e-3}, "aux": {"type": "Adam", "lr": 1e-3}})
    net = {id(p) for group in optimizers["net"].param_groups for p in group["params"]}
    aux = {id(p) for group in optimizers["aux"].param_groups for p in group["params"]}
    assert not net & aux and net | aux == {id(p) for p in model.parameters()}
    assert aux == {id(model.entropy_bottleneck.quantiles)}
    assert {id(model.Gain), id(model.QuantABCD[0].weight)} <= net
    assert model.aux_loss().requires_grad

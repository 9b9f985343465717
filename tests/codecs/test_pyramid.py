"""Seed 001's feature-pyramid codec: one model, one bitstream layer per level, a hierarchical decoder that
decodes any prefix of the levels with shared weights; trained on the variable-rate loss."""

import pytest
import torch
from torch import nn

from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.coding import decode_images, encode_images, pad
from taskcodec.codecs.pyramid import SelfAttention
from taskcodec.codecs.registry import build_codec, codec_hyperparameters, reads_ssl_model
from taskcodec.codecs.training import codec_loss
from taskcodec.data.sources import WindowSampler
from taskcodec.errors import UserError
from taskcodec.losses import VariableRateLoss

HYPER = {"N": 16, "M": 8, "levels": 3, "attention": 3, "simclr": 1}


class Features(nn.Module):
    """A stand-in for the self-supervised network: stride 4, 6 channels, with a batch norm."""

    channels, stride = 6, 4

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, 2, 1))

    def forward(self, x):
        return self.net(x)


def make_codec(seed=0, **hyper):
    torch.manual_seed(seed)
    return build_codec("pyramid", {**HYPER, **hyper}, ssl_model=Features())


def images(n=2, height=64, width=64, seed=1):
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_the_frozen_network_is_not_a_hyperparameter_and_bad_hyperparameters_get_one_sentence():
    assert codec_hyperparameters("pyramid") == (["N", "M"], ["levels", "attention", "simclr", "conditional",
                                                                 "finest_stride", "joint", "top_only"])
    with pytest.raises(UserError, match="simclr: 1 reads the self-supervised features"):
        build_codec("pyramid", HYPER)
    with pytest.raises(UserError, match="attention is 4"):
        make_codec(attention=4)
    with pytest.raises(UserError, match="joint and top_only 0 or 1, not 3, 1, 2, 0 and 0"):
        make_codec(conditional=2)
    for stride in (4, 24):
        with pytest.raises(UserError, match=f"finest_stride is {stride}; use a power of two ≥ 8"):
            make_codec(finest_stride=stride)
    with pytest.raises(UserError, match="joint 1 trains every point and top_only 1 the top point alone"):
        make_codec(joint=1, top_only=1)
    assert build_codec("pyramid", {**HYPER, "simclr": 0}).operating_points == 3  # the baseline needs none


@pytest.mark.parametrize("conditional, finest_stride", [(0, 16), (1, 16), (0, 8), (0, 32)])
def test_each_point_codes_a_prefix_of_the_levels_and_decodes_as_the_forward_pass_rounds(conditional, finest_stride):
    codec = make_codec(conditional=conditional, finest_stride=finest_stride).eval()
    if conditional:  # means far from 0 and scales of every size, as after training
        for context in codec.context:
            torch.nn.init.normal_(context[-1].weight, std=0.5)
    codec.update(force=True)
    x = images(2, 50, 70)
    sizes = []
    for point in range(3):
        codec.select_point(point)
        bitstreams = encode_images(codec, x)
        assert list(bitstreams[0]) == [f"level{i}" for i in range(1, point + 2)] == list(codec.layers_for("image"))
        decoded = decode_images(codec, bitstreams)
        with torch.no_grad():
            forward = codec(pad(x, codec.pad_multiple), quantization="ste")["x_hat"][..., :50, :70].clamp(0, 1)
            analyzed = codec.analyze(pad(x, codec.pad_multiple))["latents"]
        assert (decoded.x_hat - forward).abs().max() < 1e-4
        for layer, latents in decoded.latents.items():  # the coder's ŷ is the one the analysis rounds to
            assert (latents.y_hat - analyzed[layer].y_hat).abs().max() < 1e-4
        level = point + 1  # the finest decoded level: stride finest_stride · 2^(3 − level) on the padded image
        stride = finest_stride * 2 ** (3 - level)
        assert decoded.latents[f"level{level}"].y_hat.shape[-1] == pad(x, codec.pad_multiple).shape[-1] // stride
        sizes.append(sum(len(s) for b in bitstreams for layer in b.values() for s in layer.strings))
    assert sizes[0] < sizes[1] < sizes[2]  # each point adds a level's bits
    with pytest.raises(ValueError, match="3 operating points"):
        codec.select_point(3)


def test_conditional_levels_are_coded_from_the_coarser_level_and_cost_fewer_bits_when_it_predicts_them():
    codec = make_codec(conditional=1).eval()
    codec.update(force=True)
    assert len(codec.entropy_bottlenecks) == 1 and len(codec.context) == 2  # level 1 factorized, 2 and 3 conditional
    codec.project[1].weight.data *= 30  # level 2's latent: values of a few units, as after training
    x = images(1, 128, 128)
    latents = codec.analyze(x)["latents"]
    assert latents["level1"].scales_hat is None and latents["level2"].scales_hat.shape == latents["level2"].y_hat.shape
    codec.select_point(1)
    with torch.no_grad():
        far = sum(len(s) for b in encode_images(codec, x) for s in b["level2"].strings)
        # a context that predicts level 2 from level 1 exactly as it is: its means are ŷ_2 itself, its scales small
        y_hat_2 = latents["level2"].y_hat
        codec._prior = lambda index, coarser, alone=True: (torch.full_like(y_hat_2, 0.2), y_hat_2)
        near = sum(len(s) for b in encode_images(codec, x) for s in b["level2"].strings)
        decoded = decode_images(codec, encode_images(codec, x))
    assert near < far
    assert torch.equal(decoded.latents["level2"].y_hat, y_hat_2)


@pytest.mark.parametrize("conditional, finer_prior", [(0, "entropy_bottlenecks"), (1, "context")])
def test_the_decoder_of_a_level_reuses_the_lower_levels_weights_and_adds_its_own(conditional, finer_prior):
    codec = make_codec(conditional=conditional)
    codec.select_point(0)
    used_at_0 = _trained(codec)
    codec.select_point(2)
    used_at_2 = _trained(codec)
    assert used_at_0 < used_at_2  # θ_1 is shared; θ_2, θ_3 only join at the higher points
    # the coarsest level runs through the whole encoder pyramid; the finer ones add their projection, their
    # entropy model (conditional: the network that predicts it from the coarser level) and their injection
    assert {name.split(".")[0] for name in used_at_2 - used_at_0} == {"inject", "modulate", "project", finer_prior}
    assert not any(name.startswith("ssl_model") for name in used_at_2)  # the frozen network never trains


def test_the_levels_modulations_compose_as_if_applied_one_after_another():
    codec = make_codec(levels=4)
    for modulation in codec.modulate:
        modulation.data = torch.randn_like(modulation)
    t = torch.randn(2, 16, 3, 3)
    for step in range(len(codec.trunk) - 1):  # the first step reads ŷ_1 unmodulated
        one_by_one = t
        for modulation in codec.modulate[:2]:  # levels 2 and 3: operating point 2
            scale, bias = modulation[step]
            one_by_one = one_by_one * scale[:, None, None] + bias[:, None, None]
        scale, bias = codec._modulation(step, 3)
        assert torch.allclose(t * scale[:, None, None] + bias[:, None, None], one_by_one, atol=1e-5)


def test_point_1_uses_level_2s_modulation_and_not_level_3s():
    codec = make_codec()
    codec.select_point(1)
    used = {name for name in _trained(codec) if name.startswith("modulate")}
    assert used == {"modulate.0"}
    assert codec.point_weights == (1.0, 3.0, 5.0)  # the finer points drawn more often


def test_a_top_only_pyramid_is_the_member_of_a_larger_pyramids_family_for_its_top_point():
    big = make_codec(levels=3)  # levels at strides 64, 32, 16
    member = make_codec(levels=2, finest_stride=32, top_only=1)  # its points 0 and 1 alone: strides 64 and 32
    x = images(1, 128, 128)
    with torch.no_grad():
        assert [y.shape for y in member._latents(x, count=2)] == [y.shape for y in big._latents(x, count=2)]
    assert len(member.trunk) == len(big.trunk) and member.pad_multiple == big.pad_multiple == 64
    # the same encoder depth and decoder: the member lacks only the finest level's own parameters
    def count(*modules):
        return sum(p.numel() for module in modules for p in module.parameters())
    finest = count(big.project[0], big.entropy_bottlenecks[-1], big.inject[1]) + big.modulate[1].numel()
    assert count(big) - count(member) == finest
    # trained at its top point alone: the sampler the trainer gives the codec's point weights never draws another
    sampler = WindowSampler(4, 2, 32, 32, 16, 2, torch.Generator().manual_seed(0), member.point_weights)
    assert member.point_weights == (0.0, 1.0)
    assert {window[0].point for window, _ in zip(sampler, range(50))} == {1}
    drawn = WindowSampler(4, 2, 32, 32, 16, 3, torch.Generator().manual_seed(0), big.point_weights)
    assert {window[0].point for window, _ in zip(drawn, range(50))} == {0, 1, 2}


def _trained(codec):
    """The parameters that one training step's loss at the selected point gives a gradient."""
    codec.zero_grad()
    codec.perceptual = True
    out = codec(images())
    rate = sum(lk.log().sum() for layer in out["likelihoods"].values() for lk in layer.values())
    (out["x_hat"].square().mean() - rate + out["features_hat"].square().mean()).backward()
    return {name for name, p in codec.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_the_loss_weights_each_point_with_its_lambda_and_the_perceptual_term():
    codec = make_codec()
    criterion, _ = codec_loss(codec, [0.001, 0.01, 0.1], None, "mse", perceptual_weight=0.5)
    assert isinstance(criterion, VariableRateLoss)
    x = images()
    codec.select_point(1)
    out = {**codec(x), "point": 1}
    losses = criterion(out, x)
    expected = losses["bpp_loss"] + 0.01 * losses["distortion"] + 0.5 * 0.01 * losses["perceptual"]
    assert torch.isclose(losses["loss"], expected)
    assert set(out["likelihoods"]) == {"level1", "level2"}  # the rate of the point's levels only
    with pytest.raises(UserError, match="3 operating points but 2"):
        codec_loss(codec, [0.001, 0.01], None, "mse")
    with pytest.raises(UserError, match="must ascend"):
        VariableRateLoss([0.1, 0.01, 0.001])


def test_a_joint_step_trains_every_point_from_one_encoder_pass_weighted_as_the_draw():
    codec = make_codec(joint=1)
    criterion, _ = codec_loss(codec, [0.001, 0.01, 0.1], None, "mse")
    x = images()
    codec.select_point(0)  # the drawn point does not matter: every point trains
    out = codec(x, quantization="ste")
    assert [set(point["likelihoods"]) for point in out["points"]] == [{"level1"}, {"level1", "level2"},
                                                                      {"level1", "level2", "level3"}]
    drawn = make_codec(joint=0)  # the same weights, trained one drawn point at a time
    for k, point in enumerate(out["points"]):  # each point decodes as that point alone does
        drawn.select_point(k)
        assert torch.allclose(point["x_hat"], drawn(x, quantization="ste")["x_hat"], atol=1e-6)
    expected = 0.0
    for k, (lmbda, point) in enumerate(zip([0.001, 0.01, 0.1], out["points"])):
        bpp = sum(lk.log2().sum() for layer in point["likelihoods"].values() for lk in layer.values()) / (-2 * 64 * 64)
        expected += (2 * k + 1) / 9 * (bpp + lmbda * 255**2 * (point["x_hat"] - x).square().mean())
    losses = criterion(out, x)
    assert torch.isclose(losses["loss"], expected)
    losses["loss"].backward()
    assert all(p.grad is not None for name, p in codec.named_parameters()
               if not name.startswith("ssl_model") and not name.endswith("quantiles"))
    codec.eval()
    assert "points" not in codec(x)  # validation and coding: the selected point alone


def test_the_frozen_network_runs_only_for_what_the_loss_and_the_encoder_read():
    calls = []
    for simclr, weight, expected in ((0, 0.0, 0), (1, 0.0, 1), (0, 0.5, 2), (1, 0.5, 2)):
        codec = make_codec(simclr=simclr)
        codec.ssl_model.register_forward_hook(lambda *_: calls.append(1))
        codec_loss(codec, [0.001, 0.01, 0.1], None, "mse", perceptual_weight=weight)
        calls.clear()
        out = codec(images())
        assert len(calls) == expected, (simclr, weight)  # on x for the encoder or the target, on x̂ for P
        assert ("features_hat" in out) == (weight > 0)
        # and the workflow trains the network exactly for such a model (its sweep entry and β)
        assert reads_ssl_model("pyramid", {**HYPER, "simclr": simclr}, weight) == (expected > 0)
    assert reads_ssl_model("pyramid", {"N": 16, "M": 8}, 0.0)  # simclr 1 by default
    assert not reads_ssl_model("bmshj2018-hyperprior-vbr", {"N": 8, "M": 8}, 0.5)  # not built on one


def test_a_plugin_codec_built_on_the_network_reads_it_unless_it_says_otherwise(monkeypatch):
    from taskcodec.codecs import registry

    class BuiltOn:  # declares needs_ssl_model and no reads_ssl_model
        needs_ssl_model = True

    monkeypatch.setattr(registry, "codec_class", lambda arch: BuiltOn)
    assert registry.reads_ssl_model("plugin", {"N": 8}, 0.0)


def test_a_checkpoint_keeps_the_frozen_network_and_the_bitstreams(tmp_path):
    from taskcodec.selfsupervised.models import FeatureExtractor, SimCLR

    simclr = {"model": "resnet-small", "widths": [6, 8], "blocks": [1, 1], "normalize": False, "projection_dim": 8,
              "weights": None}
    torch.manual_seed(0)
    codec = build_codec("pyramid", HYPER, ssl_model=FeatureExtractor(SimCLR(simclr))).eval()
    codec.update(force=True)
    codec.select_point(1)
    x = images(1)
    before = encode_images(codec, x)
    save_codec(tmp_path / "model.pt", codec, "pyramid", HYPER, [0.001, 0.01, 0.1], {}, {},
               ssl_model={"params": simclr})
    loaded, meta = load_codec(tmp_path / "model.pt", point=1)
    assert meta["lmbda"] == [0.001, 0.01, 0.1] and loaded.layers == ("level1", "level2")
    assert [b.strings for b in encode_images(loaded, x)[0].values()] == [b.strings for b in before[0].values()]
    with pytest.raises(UserError, match="point 3 does not exist"):
        load_codec(tmp_path / "model.pt", point=3)
    payload = torch.load(tmp_path / "model.pt", weights_only=True)  # as a version without the modulation wrote it
    payload["state_dict"] = {key: value for key, value in payload["state_dict"].items()
                             if not key.startswith("modulate.")}
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(UserError, match=r"old.pt does not fit pyramid .* lacks modulate.0, modulate.1; retrain"):
        load_codec(tmp_path / "old.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)  # the same keys, a tensor of another shape
    payload["state_dict"]["project.0.weight"] = payload["state_dict"]["project.0.weight"][:1]
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other.pt does not fit pyramid N16-M8\S*: Error\(s\) in loading"):
        load_codec(tmp_path / "other.pt")


def test_self_attention_starts_as_the_identity_and_handles_odd_sizes_in_chunks(monkeypatch):
    import taskcodec.codecs.pyramid as pyramid

    attention = SelfAttention(8)
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(attention(x), x)
    attention.gamma.data.fill_(1.0)
    whole = attention(x)
    assert whole.shape == x.shape and not torch.equal(whole, x)
    monkeypatch.setattr(pyramid, "SCORES_AT_ONCE", 20)  # a few queries at a time: the same attention
    assert torch.allclose(attention(x), whole, atol=1e-6)

"""The scalable codec of seed 002: two layers with their own hyperpriors and bitstreams, the base layer alone
serves the frozen task model, both layers the image; equation 2's loss; checkpoints carry the task model."""

import pytest
import torch
from compressai.optimizers import net_aux_optimizer
from torch import nn

from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.coding import decode_images, encode_images, pad
from taskcodec.codecs.registry import build_codec, codec_hyperparameters
from taskcodec.errors import UserError
from taskcodec.losses import RateDistortionLoss, ScalableLoss
from taskcodec.tasks.registry import TASKS, Task, register_task

HYPER = {"N": 16, "M_base": 8, "M_enh": 12}


class FrontBack(nn.Module):
    """A task model split into ``front`` (stride 4, 6 channels, with a batch norm) and ``back`` (logits)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, 2, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes))

    def front(self, x):
        return self.stem(x)

    def back(self, features):
        return self.head(features)

    def forward(self, x):
        return self.back(self.front(x))


@pytest.fixture(scope="module")
def front_back_task():
    """A task registered for these tests only, whose model is :class:`FrontBack`."""

    @register_task("test-front-back")
    class FrontBackTask(Task):
        def build_model(self, model_params):
            return FrontBack(len(self.class_names))

    yield "test-front-back"
    TASKS.pop("test-front-back")


def make_codec(seed=0):
    torch.manual_seed(seed)
    return build_codec("scalable-hyperprior", HYPER, task_model=FrontBack())


def images(n=2, side=64, seed=1):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_the_task_model_is_not_a_sweep_hyperparameter_but_is_required():
    assert codec_hyperparameters("scalable-hyperprior") == (["N", "M_base", "M_enh"], [])
    with pytest.raises(UserError, match="add its task to tasks and name it in scalable.task"):
        build_codec("scalable-hyperprior", HYPER)


def test_forward_gives_both_layers_and_the_features_the_base_layer_must_rebuild():
    codec = make_codec().train()
    out = codec(images())
    assert set(out["likelihoods"]) == {"base", "enh"} and set(out["likelihoods"]["base"]) == {"y", "z"}
    assert out["x_hat"].shape == (2, 3, 64, 64)
    assert out["features"].shape == out["features_hat"].shape == (2, 6, 16, 16)  # stride 4, 6 channels
    assert out["likelihoods"]["base"]["y"].shape[1] == 8 and out["likelihoods"]["enh"]["y"].shape[1] == 12
    assert not codec.task_model.training  # the task model's batch norm is frozen too


def test_training_leaves_the_task_model_unchanged_and_trains_the_codec():
    codec = make_codec().train()
    task_before = {k: v.clone() for k, v in codec.task_model.state_dict().items()}
    codec_before = codec.g_a_base[0].weight.clone()
    optimizers = net_aux_optimizer(codec, {"net": {"type": "Adam", "lr": 1e-3}, "aux": {"type": "Adam", "lr": 1e-3}})
    criterion = ScalableLoss(lmbda=0.01, task_lmbda=1.0)
    for step in range(3):
        for quantization in ("noise", "ste"):
            optimizers["net"].zero_grad()
            losses = criterion(codec(images(seed=step), quantization=quantization), images(seed=step))
            losses["loss"].backward()
            optimizers["net"].step()
    for key, value in codec.task_model.state_dict().items():
        assert torch.equal(value, task_before[key]), key
    assert not torch.equal(codec.g_a_base[0].weight, codec_before)


def test_loss_is_equation_2_and_reduces_to_the_rate_distortion_loss():
    codec = make_codec().eval()
    x = images()
    with torch.no_grad():
        out = codec(x)
        plain = RateDistortionLoss(0.01)(out, x)
        losses = ScalableLoss(0.01, task_lmbda=2.0)(out, x)
        zero = ScalableLoss(0.01, task_lmbda=0.0)(out, x)
    feature_mse = ((out["features_hat"] - out["features"]) ** 2).mean()
    assert torch.allclose(losses["loss"], plain["loss"] + 2.0 * feature_mse)
    assert torch.allclose(zero["loss"], plain["loss"])
    assert torch.allclose(losses["bpp_base"] + losses["bpp_enh"], plain["bpp_loss"])
    assert losses["bpp_base"] > 0 and losses["bpp_enh"] > 0


def trained_codec(codec=None, steps=5):
    """``codec`` (default: :func:`make_codec`) after a few steps of equation 2's loss, with noise and with
    straight-through rounding, and update(), so its bitstreams are real."""
    codec = (codec or make_codec()).train()
    optimizers = net_aux_optimizer(codec, {"net": {"type": "Adam", "lr": 1e-3}, "aux": {"type": "Adam", "lr": 1e-2}})
    for step in range(steps):
        optimizers["net"].zero_grad()
        quantization = ("noise", "ste")[step % 2]
        ScalableLoss(0.01, 1.0)(codec(images(seed=step), quantization=quantization), images(seed=step))["loss"].backward()
        optimizers["net"].step()
        optimizers["aux"].zero_grad()
        codec.aux_loss().backward()
        optimizers["aux"].step()
    codec.update(force=True, update_quantiles=True)
    return codec.eval()


def test_each_layer_is_its_own_bitstream_and_decodes_to_the_rounded_latents():
    codec = trained_codec()
    x = pad(images(n=1, side=80), codec.pad_multiple)  # 128×128 after padding
    with torch.no_grad():
        strings = codec.encode(x)
        latents, _ = codec._latents(x)
        both = codec.decode({layer: [[s] for s in strings[layer]] for layer in strings}, x.shape[-2:])
        base = codec.decode({"base": [[s] for s in strings["base"]]}, x.shape[-2:])
    assert set(strings) == {"base", "enh"} and all(len(strings[layer]) == 2 for layer in strings)  # y and z
    for layer in ("base", "enh"):
        assert torch.equal(both.latents[layer].y_hat, torch.round(latents[layer]))
    assert torch.equal(base.latents["base"].y_hat, both.latents["base"].y_hat)  # the base layer alone suffices
    assert base.x_hat is None and set(base.latents) == {"base"}  # no picture without the enhancement layer
    assert both.x_hat.shape == x.shape and 0 <= both.x_hat.min() and both.x_hat.max() <= 1
    with torch.no_grad():
        expected = codec.task_model.back(codec.g_s_base(torch.round(latents["base"])))
        assert torch.allclose(codec.task_outputs(base.latents), expected)


def test_self_contained_layer_bitstreams_of_a_batch_decode_alone_and_together():
    codec = trained_codec()
    x = images(n=3, side=72, seed=5)  # padded to 128x128 by the coder, cropped back
    bitstreams = encode_images(codec, x)
    together = decode_images(codec, bitstreams)
    base_only = decode_images(codec, [{"base": b["base"]} for b in bitstreams])
    assert together.x_hat.shape == x.shape and base_only.x_hat is None
    for i, bitstream in enumerate(bitstreams):
        assert set(bitstream) == {"base", "enh"}
        alone = decode_images(codec, [bitstream])
        assert torch.equal(alone.latents["base"].y_hat, together.latents["base"].y_hat[i : i + 1])
        assert torch.equal(alone.latents["enh"].y_hat, together.latents["enh"].y_hat[i : i + 1])
        assert torch.equal(base_only.latents["base"].y_hat[i : i + 1], alone.latents["base"].y_hat)
        assert torch.allclose(alone.x_hat, together.x_hat[i : i + 1], atol=1e-6)


def test_checkpoint_rebuilds_the_task_model_it_was_trained_on(tmp_path, front_back_task):
    codec = trained_codec()
    info = {"task": front_back_task, "model_params": {"arch": "front-back"}, "class_names": ["a", "b", "c"]}
    save_codec(tmp_path / "model.pt", codec, "scalable-hyperprior", HYPER, 0.01, {}, {}, task_model=info)
    loaded, meta = load_codec(tmp_path / "model.pt")
    for key, value in codec.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = pad(images(n=1, side=64), 64)
    with torch.no_grad():
        assert codec.encode(x) == loaded.encode(x)
    assert meta["codec_id"] == "scalable-hyperprior/N16-M_base8-M_enh12"
    with pytest.raises(ValueError, match="task_model"):
        save_codec(tmp_path / "other.pt", codec, "scalable-hyperprior", HYPER, 0.01, {}, {})


def test_a_front_whose_stride_exceeds_the_latents_is_refused():
    class Deep(FrontBack):
        def front(self, x):
            return nn.functional.avg_pool2d(self.stem(x), 8)  # stride 32

    with pytest.raises(UserError, match="earlier split point"):
        build_codec("scalable-hyperprior", HYPER, task_model=Deep())

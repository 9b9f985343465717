"""Choi & Bajić's latent-space scalable codec (seed 002's baseline): one analysis whose first M_base channels are
the base layer, a latent-space transform from them to the task features, two real bitstreams per image, the frozen
task model left as it is, and a checkpoint carrying it."""

from pathlib import Path

import pytest
import torch
from test_scalable import FrontBack, front_back_task, images, trained_codec  # noqa: F401 (front_back_task: a fixture)

from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.coding import pad
from taskcodec.codecs.registry import build_codec, codec_hyperparameters, needs_task_model
from taskcodec.errors import UserError
from taskcodec.params import load_yaml, validate_params

ARCH = "choi2022-scalable"
HYPER = {"N": 16, "M_base": 8, "M_enh": 12}
ROOT = Path(__file__).resolve().parents[2]


def make_codec():
    torch.manual_seed(0)
    return build_codec(ARCH, HYPER, task_model=FrontBack())


@pytest.fixture(scope="module")
def trained():
    """:func:`make_codec` after a few steps of equation 2's loss and update(), so its bitstreams are real."""
    return trained_codec(make_codec(), steps=6)


def test_it_is_a_scalable_codec_on_the_task_model_for_the_scalable_sweep():
    assert codec_hyperparameters(ARCH) == (["N", "M_base", "M_enh"], []) and needs_task_model(ARCH)
    with pytest.raises(UserError, match="add its task to tasks and name it in scalable.task"):
        build_codec(ARCH, HYPER)
    params = load_yaml(ROOT / "params.yaml")
    params["scalable"]["sweep"]["models"].append({"arch": ARCH, **HYPER})
    validate_params(params, ROOT / "workflow" / "schemas" / "params.schema.yaml")


def test_forward_splits_one_latent_and_maps_its_base_channels_to_the_features():
    codec = make_codec().train()
    x = images()
    out = codec(x)
    assert out["x_hat"].shape == (2, 3, 64, 64)
    assert out["features"].shape == out["features_hat"].shape == (2, 6, 16, 16)  # stride 4, 6 channels
    assert set(out["likelihoods"]) == {"base", "enh"} and set(out["likelihoods"]["base"]) == {"y", "z"}
    assert out["likelihoods"]["base"]["y"].shape == (2, 8, 4, 4) and out["likelihoods"]["enh"]["y"].shape[1] == 12
    with torch.no_grad():
        latents, _ = codec._latents(x)
        y = codec.g_a(x)
        assert torch.equal(out["features"], codec.task_model.front(x))
    assert torch.equal(latents["base"], y[:, :8]) and torch.equal(latents["enh"], y[:, 8:])
    assert not codec.task_model.training  # the task model's batch norm is frozen too


def test_training_leaves_the_task_model_unchanged_and_trains_both_transforms(trained):
    initial = make_codec()  # the same seed: the trained codec's initial weights
    task_before = initial.task_model.state_dict()
    analysis, lst = initial.g_a[0].weight, initial.g_s_base[0].weight
    for key, value in trained.task_model.state_dict().items():
        assert torch.equal(value, task_before[key]), key
    assert all(p.requires_grad for p in trained.task_model.parameters())  # frozen by eval mode and no_grad
    assert not torch.equal(trained.g_a[0].weight, analysis) and not torch.equal(trained.g_s_base[0].weight, lst)


def test_two_bitstreams_the_base_one_alone_decodes_to_y1_and_the_task_features(trained, monkeypatch):
    codec = trained
    x = pad(images(n=1, side=80), codec.pad_multiple)  # 128×128 after padding
    with torch.no_grad():
        y = codec.g_a(x)
        monkeypatch.setattr(codec.task_model, "front", None)  # the encoder reads the image alone
        strings = codec.encode(x)
        both = codec.decode({layer: [[s] for s in strings[layer]] for layer in strings}, x.shape[-2:])
        base = codec.decode({"base": [[s] for s in strings["base"]]}, x.shape[-2:])
        features = codec.g_s_base(base.latents["base"].y_hat)  # the latent-space transform of Ŷ1
        expected = codec.task_model.back(codec.g_s_base(torch.round(y[:, :8])))
    assert set(strings) == {"base", "enh"} and all(len(strings[layer]) == 2 for layer in strings)  # y and z
    assert all(isinstance(s, bytes) and s for layer in strings for s in strings[layer])
    assert torch.equal(base.latents["base"].y_hat, torch.round(y[:, :8]))
    assert base.x_hat is None and set(base.latents) == {"base"}  # no picture without the enhancement layer
    assert features.shape == (1, 6, 32, 32)  # front's resolution: stride 4
    assert torch.allclose(codec.task_outputs(base.latents), codec.task_model.back(features))
    assert torch.allclose(codec.task_outputs(base.latents), expected)
    assert torch.equal(torch.cat([both.latents["base"].y_hat, both.latents["enh"].y_hat], dim=1), torch.round(y))
    assert both.x_hat.shape == x.shape and 0 <= both.x_hat.min() and both.x_hat.max() <= 1
    assert torch.equal(both.x_hat, codec.synthesize(both.latents))


def test_checkpoint_rebuilds_the_codec_and_its_task_model(trained, tmp_path, front_back_task):  # noqa: F811
    codec = trained
    info = {"task": front_back_task, "model_params": {"arch": "front-back"}, "class_names": ["a", "b", "c"]}
    save_codec(tmp_path / "model.pt", codec, ARCH, HYPER, 0.01, {}, {}, task_model=info)
    loaded, meta = load_codec(tmp_path / "model.pt")
    assert type(loaded) is type(codec) and meta["codec_id"] == "choi2022-scalable/N16-M_base8-M_enh12"
    for key, value in codec.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = pad(images(n=1, side=64), 64)
    with torch.no_grad():
        assert codec.encode(x) == loaded.encode(x)

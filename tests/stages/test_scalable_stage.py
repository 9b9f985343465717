"""The scalable codec (seed 002) through the stages' main(): train_task (a classifier split at stage 1) ->
train_codec with --task-model and --task-lmbda -> cache_latents with a bitstream per layer."""

import json

import pandas as pd
import pytest
import torch

from taskcodec.codecs.checkpoint import load_codec
from taskcodec.errors import UserError
from taskcodec.evaluation import read_table
from taskcodec.stages import cache_latents, prepare, train_codec, train_task

from stage_settings import RUN

TASK = {
    "model": {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 2, "split_stage": 1,
              "weights": None},
    "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
              "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 1, "seed": 0},
}
TRAIN = {
    "distortion": "mse", "steps": 12, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
    "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
    "spike_guard": None,
    "ema_decay": None, "quantization": "ste", "time_budget_s": None, "val_every": 6, "checkpoint_every": 6,
    "init": None, "seed": 0, "saliency_floor": None,
}
HYPER = '{"N": 8, "M_base": 4, "M_enh": 8}'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("scalable")
    params = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "seed": 0, "builtin": {"num_images": 20, "canvas_size": 72, "classes": ["circle", "square"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    manifest = root / "prepared" / "manifest.csv"
    task_model = train_task.main(["--task", "classification", "--params", json.dumps(TASK), *RUN, "--manifest", str(manifest),
                                  "--out", str(root / "task" / "model.pt")])
    return root, manifest, task_model


def train(manifest, task_model, out, *extra):
    return train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "scalable-hyperprior", "--hyper", HYPER,
                             "--lmbda", "0.01", "--manifest", str(manifest), *extra, "--out", str(out)])


def test_trains_on_equation_2_and_its_checkpoint_carries_the_task_model(workspace):
    root, manifest, task_model = workspace
    out = train(manifest, task_model, root / "codec" / "model.pt", "--task-model", str(task_model), "--task-lmbda", "2")
    codec, meta = load_codec(out)
    assert meta["arch"] == "scalable-hyperprior" and meta["task_model"]["model_params"] == TASK["model"]
    # the frozen task model inside the codec is exactly train_task's (stage 1 of the classifier: 4 channels, stride 2)
    trained_task = torch.load(task_model, weights_only=True)["state_dict"]
    for key, value in trained_task.items():
        assert torch.equal(codec.task_model.state_dict()[key], value), key
    assert (codec.feature_channels, codec.feature_stride) == (4, 2)
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["task_lmbda"] == 2.0 and metrics["steps"] == 12
    log = pd.read_csv(out.parent / "train_log.csv")
    train_rows = log[log["split"] == "train"]
    assert len(train_rows) == 12 and {"feature_mse", "bpp_base", "bpp_enh"} <= set(log.columns)
    assert (train_rows["bpp_base"] + train_rows["bpp_enh"] - train_rows["bpp"]).abs().max() < 1e-4
    assert train_rows["feature_mse"].notna().all() and (train_rows["feature_mse"] > 0).all()
    # the redundancy between the two latents (seed 002, Section 5) at every validation, traced over training
    val_rows = log[log["split"] == "val"]
    assert list(val_rows["step"]) == [6, 12]
    assert val_rows[["u_base_given_enh", "u_enh_given_base"]].apply(lambda u: u.between(0, 1)).all().all()

    cache = cache_latents.main(["--params", json.dumps({"shard_size": 4, "decode_check": -1}), *RUN, "--model",
                                str(out), "--manifest", str(manifest), "--split", "test", "--out",
                                str(root / "cache")])
    index = read_table(cache / "index.csv")
    assert {"bytes_base", "bytes_enh", "bpp_upto_enh"} <= set(index.columns)
    assert (index["bytes_base"] > 0).all() and (index["bytes_enh"] > 0).all()


def test_without_the_task_model_it_says_what_to_give(workspace, tmp_path):
    root, manifest, task_model = workspace
    with pytest.raises(UserError, match="--task-model"):
        train(manifest, task_model, tmp_path / "model.pt")
    with pytest.raises(UserError, match="--task-lmbda"):
        train(manifest, task_model, tmp_path / "model.pt", "--task-model", str(task_model))

"""prepare -> train_codec + saliency -> finetune_codec -> cache_latents, through main()."""

import json

import pandas as pd
import pytest
import torch

from taskcodec.codecs.checkpoint import load_codec
from taskcodec.errors import UserError
from taskcodec.stages import cache_latents, finetune_codec, prepare, saliency, train_codec
from taskcodec.tasks.checkpoint import save_task_model
from taskcodec.tasks.models import build_task_model

from stage_settings import RUN

PREPARE = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
           "seed": 0, "builtin": {"num_images": 15, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                                  "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
TRAIN = {"distortion": "mse", "steps": 3, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
         "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
         "spike_guard": None, "ema_decay": None, "quantization": "noise", "time_budget_s": None, "val_every": 3,
         "checkpoint_every": 10, "init": None, "seed": 0, "saliency_floor": None}
FINETUNE = {"steps": 4, "batch_size": 4, "lr": 1e-4, "aux_lr": 1e-3, "clip_max_norm": 1.0, "task_weight": 1.0, "crop_padding": 2,
            "saliency_floor": 0.3, "time_budget_s": None, "val_every": 2, "checkpoint_every": 2, "seed": 0,
            "lr_drop_at": [0.75], "lr_gamma": 0.3}
TASK = {"arch": "resnet-small", "widths": [4], "blocks": [1], "stem_stride": 1, "weights": None}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    prepare.main(["--params", json.dumps(PREPARE), "--out", str(root / "prepared")])
    manifest = root / "prepared" / "manifest.csv"
    codec = root / "codec" / "model.pt"
    train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}',
                      "--lmbda", "0.01", "--manifest", str(manifest), "--out", str(codec)])
    task = root / "task" / "model.pt"
    save_task_model(task, build_task_model(TASK, 3), "classification", TASK, 3, ["circle", "square", "ring"], {}, {})
    maps = saliency.main(["--params", json.dumps({"method": "spectral-residual", "working_width": 64,
                                                  "blur_sigma": 2.5, "grid_images": 2}),
                          "--manifest", str(manifest), "--out", str(root / "saliency")])
    return manifest, codec, task, maps


def _finetune(workspace, out, params=FINETUNE, saliency_dir=True, run=RUN):
    manifest, codec, task, maps = workspace
    extra = ["--saliency", str(maps)] if saliency_dir else []
    return finetune_codec.main(["--params", json.dumps(params), *run, "--model", str(codec), "--task-model", str(task),
                                "--tau", "0.5", "--manifest", str(manifest), *extra, "--out", str(out)])


def test_fine_tuning_from_the_files_gives_the_codec_of_fine_tuning_in_memory(workspace, tmp_path, capsys):
    held = _finetune(workspace, tmp_path / "held" / "model.pt", run=[*RUN, "--mem-mb", "100"])
    read = _finetune(workspace, tmp_path / "read" / "model.pt", run=[*RUN, "--mem-mb", "0"])  # with the maps
    said = capsys.readouterr().out
    assert "train images: 9 images held decoded in memory" in said
    assert "train images: 9 images read from their files by the training process" in said
    streamed = load_codec(read)[0].state_dict()
    for key, value in load_codec(held)[0].state_dict().items():
        assert torch.equal(value, streamed[key]), key


def test_finetuned_model_loads_and_codes_like_a_trained_codec(workspace, tmp_path):
    out = _finetune(workspace, tmp_path / "ft" / "model.pt")
    model, meta = load_codec(out)
    assert meta["arch"] == "bmshj2018-hyperprior" and meta["lmbda"] == 0.01  # λ of the pretrained codec
    assert meta["params"]["tau"] == 0.5 and meta["params"]["pretrained_params"] == TRAIN
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["tau"] == 0.5 and metrics["task_weight"] == 1.0 and metrics["steps"] == 4 and metrics["run_id"]
    assert {"bpp", "psnr", "mse", "accuracy", "task_loss"} <= set(metrics["val"])
    log = pd.read_csv(out.parent / "train_log.csv")
    assert (log["split"] == "train").sum() == 4 and not (out.parent / "resume.pt").exists()
    pretrained, _ = load_codec(workspace[1])
    assert not torch.equal(model.g_s[0].weight, pretrained.g_s[0].weight)
    cache = cache_latents.main(["--params", json.dumps({"shard_size": 8, "decode_check": -1}), *RUN,
                                "--model", str(out), "--manifest", str(workspace[0]), "--split", "val",
                                "--out", str(tmp_path / "cache")])
    summary = json.loads((cache / "cache.json").read_text())
    assert summary["decode_check"]["images"] == 3 and summary["decode_check"]["max_abs_diff"] < 1e-3


def test_saliency_floor_needs_the_saliency_folder(workspace, tmp_path):
    with pytest.raises(UserError, match="saliency_floor is 0.3, so pass --saliency"):
        _finetune(workspace, tmp_path / "model.pt", saliency_dir=False)


def test_task_model_for_other_classes_is_refused(workspace, tmp_path):
    manifest, codec, _, maps = workspace
    other = tmp_path / "task2.pt"
    save_task_model(other, build_task_model(TASK, 2), "classification", TASK, 2, ["a", "b"], {}, {})
    with pytest.raises(UserError, match="trained for 2 classes but the dataset has 3"):
        finetune_codec.main(["--params", json.dumps(FINETUNE), *RUN, "--model", str(codec), "--task-model", str(other),
                             "--tau", "1", "--manifest", str(manifest), "--saliency", str(maps),
                             "--out", str(tmp_path / "model.pt")])

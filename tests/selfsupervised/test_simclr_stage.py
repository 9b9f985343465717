"""train_simclr via main(): outputs, the resnet50-from-a-local-file option, and resume after a SIGTERM."""

import json
import os
import signal

import pandas as pd
import pytest
import torch
import torchvision

from taskcodec.errors import UserError
from taskcodec.selfsupervised import load_feature_extractor, load_simclr
from taskcodec.selfsupervised.training import ContrastiveObjective
from taskcodec.stages import prepare, train_simclr

from stage_settings import RUN

PARAMS = {"model": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "weights": None, "normalize": False,
          "projection_dim": 8, "crop_size": 16, "min_crop_scale": 0.3, "jitter_strength": 0.5, "temperature": 0.2,
          "steps": 6, "batch_size": 8, "lr": 0.003, "weight_decay": 1e-6, "lr_warmup": 0.1, "time_budget_s": None,
          "val_every": 3, "checkpoint_every": 2, "seed": 0}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("simclr")
    params = {"dataset": "builtin", "root": None, "image_size": 32, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "seed": 0, "builtin": {"num_images": 30, "canvas_size": 40, "classes": ["circle", "square", "ring"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    return root, root / "prepared" / "manifest.csv"


def argv(params, manifest, out):
    return ["--params", json.dumps(params), *RUN, "--manifest", str(manifest), "--out", str(out)]


@pytest.fixture(scope="module")
def trained(workspace):
    root, manifest = workspace
    out = root / "simclr" / "model.pt"
    assert train_simclr.main(argv(PARAMS, manifest, out)) == out
    return out


@pytest.mark.parametrize("threads, reader", [("1", "the training process"), ("2", "1 loader worker")])
def test_simclr_trained_from_the_files_is_the_one_trained_in_memory(workspace, trained, tmp_path, capsys, threads,
                                                                     reader):
    _, manifest = workspace
    out = tmp_path / "read" / "model.pt"
    # each split read from its files; with 2 threads, PyTorch keeps the one the in-memory training had
    train_simclr.main([*argv(PARAMS, manifest, out), "--mem-mb", "0", "--threads", threads])
    assert f"train images: 18 images read from their files by {reader}" in capsys.readouterr().out
    read = load_simclr(out)[0].state_dict()
    for key, value in load_simclr(trained)[0].state_dict().items():
        assert torch.equal(value, read[key]), key
    metrics = [json.loads((path.parent / "metrics.json").read_text()) for path in (trained, out)]
    assert metrics[0]["val_loss"] == metrics[1]["val_loss"]


def test_train_simclr_writes_model_metrics_and_log(trained):
    folder = trained.parent
    assert sorted(path.name for path in folder.iterdir()) == ["metrics.json", "model.pt", "train_log.csv"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["images"] == {"train": 18, "val": 6} and metrics["steps"] == 6 and metrics["run_id"]
    assert metrics["group1_channels"] == 4 and metrics["stride"] == 4
    assert metrics["chance_top1"] == pytest.approx(1 / 11)  # 6 val images: one batch of 6, 12 views
    assert 0 < metrics["val_loss"] and 0 <= metrics["val_top1"] <= 1
    log = pd.read_csv(folder / "train_log.csv")
    assert list(log["split"]) == ["train"] * 3 + ["val"] + ["train"] * 3 + ["val"] and list(log["step"])[-1] == 6
    assert log["loss"].notna().all() and metrics["val_loss"] == log["loss"].iloc[-1]
    _, info = load_simclr(trained)
    assert info["params"] == PARAMS and info["metrics"] == metrics
    assert load_feature_extractor(trained)(torch.rand(1, 3, 32, 32)).shape == (1, 4, 8, 8)


def test_sigterm_saves_a_checkpoint_exits_143_and_a_rerun_ends_identically(workspace, trained, tmp_path, monkeypatch,
                                                                          capsys):
    _, manifest = workspace
    out = tmp_path / "simclr" / "model.pt"
    batch = ContrastiveObjective.batch

    def terminating(self, step):  # what SLURM sends before a kill, during step 4 (after the checkpoint at 2)
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return batch(self, step)

    monkeypatch.setattr(ContrastiveObjective, "batch", terminating)
    with pytest.raises(SystemExit) as stopped:
        train_simclr.main(argv(PARAMS, manifest, out))
    assert stopped.value.code == 143
    assert [path.name for path in out.parent.iterdir()] == ["resume.pt"]  # no model, metrics or log
    assert torch.load(out.parent / "resume.pt", weights_only=True)["progress"]["step"] == 4
    monkeypatch.setattr(ContrastiveObjective, "batch", batch)
    capsys.readouterr()

    train_simclr.main(argv(PARAMS, manifest, out))
    assert f"resuming {out.parent / 'resume.pt'} at step 4" in capsys.readouterr().out
    resumed, reference = load_simclr(out)[0].state_dict(), load_simclr(trained)[0].state_dict()
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key
    logs = [pd.read_csv(path.parent / "train_log.csv").drop(columns="elapsed_s") for path in (out, trained)]
    pd.testing.assert_frame_equal(*logs)
    assert not (out.parent / "resume.pt").exists()


def test_resnet50_from_a_local_weights_file_with_no_steps(workspace, tmp_path):
    _, manifest = workspace
    torch.manual_seed(0)
    weights = tmp_path / "simclr_r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    params = {**PARAMS, "model": "resnet50", "weights": str(weights), "projection_dim": 16, "steps": 0}
    out = tmp_path / "simclr" / "model.pt"
    train_simclr.main(argv(params, manifest, out))
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["steps"] == 0 and metrics["group1_channels"] == 256 and metrics["val_loss"] > 0
    extractor = load_feature_extractor(out)
    assert extractor.channels == 256 and extractor(torch.rand(1, 3, 32, 32)).shape == (1, 256, 8, 8)

    with pytest.raises(UserError, match=f"simclr.weights {tmp_path / 'absent.pth'} does not exist;"):
        train_simclr.main(argv({**params, "weights": str(tmp_path / "absent.pth")}, manifest, tmp_path / "x.pt"))


def test_a_mistyped_key_is_refused_as_the_pipeline_does(workspace, tmp_path):
    _, manifest = workspace
    params = {**{k: v for k, v in PARAMS.items() if k != "temperature"}, "temprature": 0.2}
    with pytest.raises(UserError, match="unknown key 'simclr.temprature' \\(did you mean 'temperature'\\?\\)"):
        train_simclr.main(argv(params, manifest, tmp_path / "model.pt"))

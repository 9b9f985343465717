import pandas as pd
import pytest
import torch

from taskcodec.augment import random_shift_flip
from taskcodec.tasks import training
from taskcodec.tasks.models import build_task_model
from taskcodec.tasks.registry import build_task
from taskcodec.tasks.training import LabeledSet, train_classifier

SMALL = {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 1, "weights": None}
PARAMS = {"epochs": 3, "batch_size": 4, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
          "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 1, "seed": 0}


def colour_images(count, seed=0):
    """Class 0: reddish images, class 1: bluish ones, with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    images = torch.rand(count, 3, 16, 16, generator=generator) * 120
    images[labels == 0, 0] += 120
    images[labels == 1, 2] += 120
    return LabeledSet((images.to(torch.uint8),), labels)


def run(tmp_path, params, name="run", data=None):
    torch.manual_seed(0)
    model = build_task_model(SMALL, 2)
    data = data or colour_images(24)
    train, val = LabeledSet((data.inputs[0][:16],), data.labels[:16]), LabeledSet((data.inputs[0][16:],), data.labels[16:])
    state = train_classifier(model, params, train, val, build_task("classification", ["a", "b"]),
                             torch.device("cpu"), tmp_path / f"{name}-resume.pt",
                             tmp_path / f"{name}-log.csv")
    return model, state


def test_random_shift_flip_moves_all_inputs_alike():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    a, b = random_shift_flip((x, x * 10), 1, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(b, a * 10)
    (same,) = random_shift_flip((x,), 0, torch.Generator().manual_seed(0))
    assert all(torch.equal(s, o) or torch.equal(s, o.flip(-1)) for s, o in zip(same, x))


def test_learns_and_logs_every_epoch(tmp_path):
    _, state = run(tmp_path, {**PARAMS, "epochs": 8})
    assert [row["epoch"] for row in state.history] == list(range(1, 9))
    assert [row["step"] for row in state.history] == list(range(4, 36, 4))  # 16 images in batches of 4
    assert state.best["val_top1"] == 1.0
    assert (tmp_path / "run-log.csv").read_text().startswith("epoch,step,train_loss,train_top1,val_loss")


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    reference, _ = run(tmp_path, PARAMS, "reference")
    real, calls = training.random_shift_flip, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:  # killed in epoch 2 (4 steps per epoch); the checkpoint is after epoch 1
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "random_shift_flip", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, PARAMS, "killed")
    assert torch.load(tmp_path / "killed-resume.pt", weights_only=True)["progress"]["step"] == 4
    calls["n"] = -100
    resumed, state = run(tmp_path, PARAMS, "killed")
    assert calls["n"] == -100 + 8 and state.history[-1]["epoch"] == 3  # only epochs 2 and 3 were trained again
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    logs = [pd.read_csv(tmp_path / f"{name}-log.csv").drop(columns="elapsed_s") for name in ("reference", "killed")]
    pd.testing.assert_frame_equal(*logs)


def test_time_budget_stops_training(tmp_path):
    _, state = run(tmp_path, {**PARAMS, "epochs": 10**4, "time_budget_s": 0.3, "checkpoint_every": 10**4})
    assert 0 < state.history[-1]["epoch"] < 10**4 and state.elapsed_s >= 0.3
    assert state.history[-1]["step"] == state.step  # a last partial epoch is validated and logged too

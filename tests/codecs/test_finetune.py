import pandas as pd
import pytest
import torch
from torch import nn

from taskcodec.codecs.finetune import LOG_FIELDS, finetune_codec
from taskcodec.tasks.checkpoint import freeze
from taskcodec.codecs.registry import build_codec
from taskcodec.data.sources import InMemory, with_maps
from taskcodec.data.tensors import to_float
from taskcodec.losses import RateDistortionLoss, TaskAwareLoss
from taskcodec.tasks.registry import build_task

PARAMS = {
    "steps": 6, "batch_size": 4, "lr": 1e-3, "aux_lr": 1e-3, "clip_max_norm": 1.0, "task_weight": 1.0, "crop_padding": 2,
    "saliency_floor": None, "time_budget_s": None, "val_every": 3, "checkpoint_every": 100, "seed": 0,
    "lr_drop_at": [0.8], "lr_gamma": 0.5,
}


TASK = build_task("classification", ["dark", "bright"])


def tiny_classifier(num_classes=2):
    """Float [0, 1] images → logits, with batch norm so that train mode would change its buffers."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


def data(count=16):
    """Blurry random 64×64 images, labelled bright (1) or dark (0)."""
    low = torch.rand(count, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images = (nn.functional.interpolate(low, size=(64, 64), mode="bilinear") * 255).round().to(torch.uint8)
    labels = (images.float().mean(dim=(1, 2, 3)) > images.float().mean()).long()
    return images, labels


def codec():
    torch.manual_seed(0)
    return build_codec("bmshj2018-hyperprior", {"N": 8, "M": 12})


def test_tau_one_without_task_weight_is_the_rate_distortion_loss():
    images, labels = data(4)
    x = to_float(images, torch.device("cpu"))
    output = codec()(x)
    rd = RateDistortionLoss(0.01)(output, x)
    joint = TaskAwareLoss(0.01, 1.0, freeze(tiny_classifier()), 0.0, TASK)(output, x, labels)
    assert joint["loss"].item() == rd["loss"].item()
    weighted = TaskAwareLoss(0.01, 2.5, freeze(tiny_classifier()), 0.3, TASK)(output, x, labels)
    expected = rd["bpp_loss"] + 2.5 * 0.01 * rd["distortion"] + 0.3 * weighted["task_loss"]
    assert weighted["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def sources(images, labels, train=16):
    """The first ``train`` images (padded for PARAMS' translations) and the rest, each with their labels."""
    return (InMemory(images[:train], PARAMS["crop_padding"]), labels[:train], InMemory(images[train:]),
            labels[train:])


def test_task_gradients_reach_the_codec_through_the_frozen_task_model():
    images, labels = data(4)
    x = to_float(images, torch.device("cpu"))
    model, task = codec(), freeze(tiny_classifier())
    # τ = 0: the synthesis transform gets gradients only through the task model
    TaskAwareLoss(0.01, 0.0, task, 1.0, TASK)(model(x), x, labels)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.g_s.parameters())
    assert all(p.grad is None for p in task.parameters())


def test_finetune_trains_the_codec_and_leaves_the_task_model_untouched(tmp_path):
    images, labels = data(20)
    model, task = codec(), tiny_classifier()
    task_before = {key: value.clone() for key, value in task.state_dict().items()}
    codec_before = {key: value.clone() for key, value in model.state_dict().items()}
    state = finetune_codec(model, 0.01, 1.0, task, TASK, PARAMS, *sources(images, labels),
                           torch.device("cpu"), tmp_path / "resume.pt", tmp_path / "log.csv")
    assert not task.training and not any(p.requires_grad for p in task.parameters())
    for key, value in task.state_dict().items():  # weights and batch-norm statistics
        assert torch.equal(value, task_before[key]), key
    assert not torch.equal(model.g_a[0].weight, codec_before["g_a.0.weight"])
    assert state.step == 6 and [row["step"] for row in state.history if row["split"] == "val"] == [3, 6]
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.columns) == LOG_FIELDS
    val = log[log["split"] == "val"].iloc[-1]
    assert 0 <= val["accuracy"] <= 1 and val["task_loss"] > 0 and val["bpp"] > 0 and val["psnr"] > 0
    assert model.entropy_bottleneck._quantized_cdf.numel() > 0  # update() ran: ready to code


def test_finetune_with_saliency_weights(tmp_path):
    images, labels = data(20)
    maps = torch.zeros(20, 1, 64, 64, dtype=torch.uint8)
    maps[..., 16:48, 16:48] = 255
    params = {**PARAMS, "steps": 2, "val_every": 2, "saliency_floor": 0.3}
    plain = finetune_codec(codec(), 0.01, 1.0, tiny_classifier(), TASK, {**params, "saliency_floor": None},
                           *sources(images, labels), torch.device("cpu"), tmp_path / "p.pt", tmp_path / "p.csv")
    weighted = finetune_codec(codec(), 0.01, 1.0, tiny_classifier(), TASK, params,
                              *sources(with_maps(images, maps), labels), torch.device("cpu"), tmp_path / "w.pt",
                              tmp_path / "w.csv")
    assert weighted.history[0]["mse"] == pytest.approx(plain.history[0]["mse"])  # same batch, plain MSE logged
    assert weighted.history[0]["loss"] != pytest.approx(plain.history[0]["loss"])  # but weighted in the loss

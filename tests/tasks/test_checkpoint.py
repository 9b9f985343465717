import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.stages.prepare import prepare
from taskcodec.tasks.checkpoint import (freeze, load_latent_classifier, load_task_model, save_latent_classifier,
                                        save_task_model)
from taskcodec.tasks.latent_models import build_latent_classifier
from taskcodec.tasks.models import build_task_model

SMALL = {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 1, "weights": None}


def test_task_model_round_trip(tmp_path):
    model = build_task_model(SMALL, 3).eval()
    path = tmp_path / "model.pt"
    save_task_model(path, model, "classification", SMALL, 3, ["a", "b", "c"], {"epochs": 1}, {"test_top1": 0.5})
    loaded, info = load_task_model(path)
    assert not loaded.training
    task = info.pop("task")
    assert task.name == "classification" and task.class_names == ["a", "b", "c"]
    assert info == {"model_params": SMALL, "num_classes": 3, "class_names": ["a", "b", "c"],
                    "train_params": {"epochs": 1}, "metrics": {"test_top1": 0.5}}
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))


def test_class_count_mismatch_names_the_file(tmp_path):
    path = tmp_path / "model.pt"
    save_task_model(path, build_task_model(SMALL, 3), "classification", SMALL, 3, ["a", "b", "c"], {}, {})
    builtin = {"num_images": 8, "canvas_size": 16, "classes": ["circle", "square", "ring", "star"],
               "object_scale": [0.5, 0.9]}
    prepared = prepare({"dataset": "builtin", "image_size": 16, "split": {"train": 0.5, "val": 0.25, "test": 0.25},
                        "seed": 0, "on_bad_image": "stop", "builtin": builtin}, tmp_path / "prepared")
    with pytest.raises(UserError, match=f"{path} was trained for 3 classes but the dataset has 4; retrain"):
        load_task_model(path, manifest=prepared / "manifest.csv")


def test_a_codec_checkpoint_is_not_a_task_model(tmp_path):
    torch.save({"kind": "taskcodec-codec"}, tmp_path / "codec.pt")
    with pytest.raises(UserError, match="not a taskcodec-task-model checkpoint"):
        load_task_model(tmp_path / "codec.pt")


def test_latent_classifier_round_trip(tmp_path):
    params = {"arch": "cresnet", "width": 8, "blocks": [1, 1, 1]}
    model = build_latent_classifier(params, 12, 4).eval()
    save_latent_classifier(tmp_path / "m.pt", model, params, 12, 4, list("abcd"), {}, {})
    loaded, info = load_latent_classifier(tmp_path / "m.pt", expect_num_classes=4)
    y, s = torch.randn(2, 12, 4, 4), torch.rand(2, 12, 4, 4)
    assert info["latent_channels"] == 12 and torch.equal(loaded(y, s), model(y, s))


def test_freeze_stops_gradients_but_not_the_input_gradient():
    model = freeze(build_task_model(SMALL, 3))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None

"""The detection task: mAP on a hand-checked case and as pycocotools computes it, the detector's split, box
augmentation, learning, errors."""

import json

import numpy as np
import pytest
import torch

from taskcodec.augment import random_shift_flip, shift_flip_draws, window_draws
from taskcodec.data.manifest import split_rows
from taskcodec.data.sources import InMemory
from taskcodec.errors import UserError
from taskcodec.stages.prepare import prepare
from taskcodec.tasks.evaluation import predict_logits
from taskcodec.tasks.registry import build_task, check_model_params
from taskcodec.tasks.training import labeled_split, task_metrics, train_classifier

FCOS = {"arch": "fcos-small", "widths": [16, 32, 64], "blocks": [1, 1, 1], "stem_stride": 2, "head_width": 32,
        "split_stage": 1, "weights": None}


def _outputs(predictions, num_classes=1):
    """Detector outputs N×(K+7)×1×P: one location per prediction (class, score, box), as in a detector's map."""
    count = max(len(p) for p in predictions)
    out = torch.full((len(predictions), num_classes + 7, 1, count), -30.0)
    for i, image in enumerate(predictions):
        for j, (label, score, box) in enumerate(image):
            logit = torch.logit(torch.tensor(score))
            out[i, label, 0, j] = logit
            out[i, num_classes, 0, j] = logit  # √(p_class · p_centerness) = score
            out[i, num_classes + 1: num_classes + 5, 0, j] = torch.tensor(box)
            out[i, num_classes + 5:, 0, j] = torch.tensor([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return out


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}


def test_map_of_a_hand_checked_case():
    """Two images with one object each: an exact detection and one of IoU 0.3 (120 / 400 px²). At IoU 0.5 the
    second is a miss, so precision is 1 up to recall ½ and the 101-point COCO average is 51/101 = 0.505."""
    task = build_task("detection", ["thing"])
    outputs = _outputs([[(0, 0.9, [10, 10, 30, 30])], [(0, 0.8, [10, 10, 30, 16])]])
    targets = [_target([[10, 10, 30, 30]], [0])] * 2
    found = task.detections(outputs)
    assert torch.allclose(found[1]["boxes"], torch.tensor([[10.0, 10, 30, 16]])) and found[1]["scores"].item() == \
        pytest.approx(0.8)
    assert task.summarize(outputs, targets)["map_50"] == pytest.approx(51 / 101)
    assert task.scores(outputs, targets)["map_50"].tolist() == [1.0, 0.0]


def test_map_backend_gives_pycocotools_values(monkeypatch):
    """The faster backend's mAP, over a set and per image, equals the official pycocotools evaluation's on
    random detections (jittered objects, misses, false boxes of three classes), NaN where either is undefined."""
    import taskcodec.tasks.detection as detection

    assert detection._map()._coco_backend.backend == "faster_coco_eval"
    assert detection._image_map(detection.MAP_BACKEND)._coco_backend.backend == "faster_coco_eval"
    generator = torch.Generator().manual_seed(0)
    task, predictions, targets = build_task("detection", ["a", "b", "c"]), [], []
    for _ in range(40):
        corners = torch.rand(3, 2, generator=generator) * 40
        boxes = torch.cat([corners, corners + 4 + torch.rand(3, 2, generator=generator) * 20], dim=1)
        labels = torch.randint(0, 3, (3,), generator=generator)
        kept = int(torch.randint(0, 4, (1,), generator=generator))  # 0-3 objects; none: AP undefined
        targets.append(_target(boxes[:kept].tolist(), labels[:kept].tolist()))
        found = boxes + torch.randn(3, 4, generator=generator) * 3  # jittered: some match at 0.5, fewer at 0.95
        scores = torch.rand(3, generator=generator) * 0.9 + 0.05
        predictions.append([(int(label), float(score), box.tolist()) for label, score, box in zip(
            torch.randint(0, 3, (3,), generator=generator).where(torch.rand(3, generator=generator) < 0.3, labels),
            scores, found) if box[2] > box[0] and box[3] > box[1]])
    outputs = _outputs(predictions, num_classes=3)
    measured = task.summarize(outputs, targets), task.scores(outputs, targets)
    monkeypatch.setattr(detection, "MAP_BACKEND", "pycocotools")
    assert detection._map()._coco_backend.backend == "pycocotools"
    assert detection._image_map(detection.MAP_BACKEND)._coco_backend.backend == "pycocotools"  # per image too
    official = task.summarize(outputs, targets), task.scores(outputs, targets)
    assert measured[0] == pytest.approx(official[0]) and 0 < official[0]["map"] < official[0]["map_50"] < 1
    for name in task.metric_names:
        assert torch.allclose(measured[1][name], official[1][name], equal_nan=True)
        assert official[1][name].isnan().any() and (official[1][name] > 0).any()


def test_front_and_back_split_the_detector():
    task = build_task("detection", ["a", "b", "c"])
    x = torch.rand(2, 3, 48, 48)
    for split, channels in ((0, 16), (1, 16), (2, 32), (3, 64)):
        model = task.build_model({**FCOS, "split_stage": split}).eval()
        features = model.front(x)
        assert features.shape[1] == channels
        assert torch.equal(model.back(features), model(x))
    assert model(x).shape == (2, 3 + 7, 6, 6)  # stride 8
    with pytest.raises(UserError, match="split_stage is 4"):
        task.build_model({**FCOS, "split_stage": 4})
    with pytest.raises(UserError, match="split_stage"):
        check_model_params("detection", {key: value for key, value in FCOS.items() if key != "split_stage"})


def test_boxes_move_with_the_augmented_image():
    task = build_task("detection", ["a"])
    image = torch.zeros(8, 1, 20, 24)
    image[:, :, 3:9, 2:12] = 1.0
    targets = [_target([[2, 3, 12, 9]], [0])] * 8
    generator = torch.Generator().manual_seed(3)
    moved = task.augment(targets, shift_flip_draws(8, 4, torch.Generator().set_state(generator.get_state())), 4,
                         (20, 24))
    (shifted,) = random_shift_flip((image,), 4, generator)
    for picture, target in zip(shifted, moved):
        rows, cols = np.nonzero(picture[0].numpy() > 0.5)
        assert target["boxes"].tolist() == [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]


def test_boxes_move_with_the_translated_windows_of_codec_fine_tuning():
    task = build_task("detection", ["a"])
    images = torch.zeros(3, 1, 20, 20)
    boxes = [[3, 3, 12, 9], [5, 5, 9, 17], [4, 4, 16, 8]]  # 3 px or more from the edges: padding adds nothing
    for picture, (x0, y0, x1, y1) in zip(images, boxes):
        picture[:, y0:y1, x0:x1] = 1.0
    targets = [_target([box], [0]) for box in boxes]
    source = InMemory(images, padding=3)
    draws = window_draws(3, 16, source.height, source.width, 20, torch.Generator().manual_seed(5))
    windows = source.windows(draws, 20)
    moved = task.augment([targets[i] for i in draws.index.tolist()], draws, 3, (20, 20))
    assert draws.flips.any() and not draws.flips.all() and (draws.tops != 3).any()
    for window, target in zip(windows, moved):
        rows, cols = np.nonzero(window[0].numpy() > 0.5)
        assert target["boxes"].tolist() == [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]


def test_targets_need_boxes_of_known_classes():
    task = build_task("detection", ["a", "b"])
    with pytest.raises(UserError, match="has no boxes"):
        task.target({"image_id": "x", "label": 0}, None)
    with pytest.raises(UserError, match="outside the 2 classes"):
        task.target({"image_id": "x", "objects": json.dumps({"boxes": [[0, 0, 1, 1]], "labels": [2]})}, None)
    classification = build_task("classification", ["a", "b"])
    with pytest.raises(UserError, match="has no class label"):
        classification.target({"image_id": "x", "label": -1}, None)


def test_loss_is_finite_with_and_without_objects():
    task = build_task("detection", ["a", "b"])
    model = task.build_model(FCOS)
    outputs = model(torch.rand(2, 3, 48, 48))
    loss = task.loss(outputs, [_target([[4, 4, 30, 20]], [1]), _target(np.zeros((0, 4)), [])])
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and model.box.weight.grad.abs().sum() > 0


def test_the_detector_learns_a_small_generated_set(tmp_path):
    params = {"dataset": "builtin", "root": None, "image_size": 48, "seed": 0, "on_bad_image": "stop",
              "split": {"train": 0.8, "val": 0.1, "test": 0.1},
              "builtin": {"num_images": 160, "canvas_size": 48, "classes": ["circle", "square"],
                          "object_scale": [0.35, 0.6], "objects": [1, 2]}}
    manifest = prepare(params, tmp_path / "prepared") / "manifest.csv"
    task = build_task("detection", ["circle", "square"])
    train, val = (labeled_split(split_rows(manifest, split), task) for split in ("train", "val"))
    torch.manual_seed(0)
    model = task.build_model(FCOS)
    device = torch.device("cpu")
    before = task_metrics(task, predict_logits(model, train.inputs, 64, device), train.labels)
    trained = train_classifier(model, {"epochs": 12, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "nesterov": True,
                                       "weight_decay": 5e-4, "crop_padding": 2, "time_budget_s": 120,
                                       "checkpoint_every": 100, "seed": 0},
                               train, val, task, device, tmp_path / "resume.pt", tmp_path / "log.csv")
    after = task_metrics(task, predict_logits(model, train.inputs, 64, device), train.labels)
    assert before["map_50"] < 0.05 and after["map_50"] > 0.3 and after["map_50"] > 10 * before["map_50"]
    assert after["loss"] < before["loss"] and trained.history[-1]["epoch"] == 12


def test_train_task_stage_and_per_image_measures(tmp_path):
    """train_task on a detection dataset, then the evaluation's per-image measures of its frozen model."""
    from taskcodec.data.stored import read_image
    from taskcodec.data.manifest import split_rows
    from taskcodec.evaluation import TaskMeasures
    from taskcodec.stages import train_task
    from taskcodec.tasks.checkpoint import load_task_model

    params = {"dataset": "builtin", "root": None, "image_size": 32, "seed": 0, "on_bad_image": "stop",
              "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "builtin": {"num_images": 20, "canvas_size": 40, "classes": ["circle", "square", "ring"],
                          "object_scale": [0.3, 0.6], "objects": [1, 3]}}
    manifest = prepare(params, tmp_path / "prepared") / "manifest.csv"
    task_params = {"model": {**FCOS, "split_stage": 2},
                   "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True,
                             "weight_decay": 5e-4, "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 1,
                             "seed": 0}}
    out = tmp_path / "task" / "model.pt"
    train_task.main(["--task", "detection", "--params", json.dumps(task_params), "--device", "cpu", "--threads", "1",
                     "--manifest", str(manifest), "--out", str(out)])
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["class_names"] == ["circle", "square", "ring"] and set(metrics) >= {"test_map_50", "test_map"}
    _, info = load_task_model(out, manifest=manifest)
    assert info["task"].name == "detection"
    measures = TaskMeasures(out, "cpu")
    row = split_rows(manifest, "test")[0]
    image = read_image(row["path"])
    measured = measures.measure(row["image_id"], row, image, image)
    assert set(measured) == {"label", "pred", "map_50", "map"}
    assert json.loads(measured["label"]) == json.loads(row["objects"]) and "boxes" in json.loads(measured["pred"])


def test_a_torchvision_detector_needs_local_weights():
    with pytest.raises(UserError, match="needs trained local weights"):
        build_task("detection", ["a"]).build_model({"arch": "fasterrcnn_mobilenet_v3_large_fpn", "weights": None})

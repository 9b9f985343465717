"""Detection through the evaluation stages' main(): prepare with objects -> train_task (fcos-small) -> train_codec ->
cache_latents -> evaluate_codec / evaluate_classical -> report_task, whose mAP is the mAP over each point's images;
a codec fine-tuned through the frozen detector; and a scalable codec carrying the detector, measured for the task
from its base layer alone."""

import json

import pandas as pd
import pytest
import torch
from torchmetrics.detection import MeanAveragePrecision

from taskcodec.codecs.bitstream import ImageBitstream
from taskcodec.codecs.cache import read_bitstreams
from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.coding import decode_images
from taskcodec.codecs.registry import build_codec
from taskcodec.data.manifest import read_manifest
from taskcodec.evaluation import read_table
from taskcodec.losses import ScalableLoss
from taskcodec.stages import (cache_latents, evaluate_classical, evaluate_codec, finetune_codec, prepare, report_task,
                              train_codec)
from taskcodec.stages import train_task
from taskcodec.tasks.checkpoint import load_task_model

from stage_settings import EVALUATE, REPORT, RUN, TRAIN

CLASSES = ["circle", "square", "ring"]
PREPARE = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
           "seed": 0, "on_bad_image": "stop",
           "builtin": {"num_images": 80, "canvas_size": 72, "classes": CLASSES, "object_scale": [0.35, 0.7],
                       "objects": [1, 2]}}
FCOS = {"arch": "fcos-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "head_width": 16,
        "split_stage": 1, "weights": None}
TASK = {"model": FCOS,
        "train": {"epochs": 12, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                  "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 12, "seed": 0}}
SCALABLE = {"N": 8, "M_base": 4, "M_enh": 6}


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    """A prepared detection dataset, its trained fcos-small and the test split's objects by image."""
    root = tmp_path_factory.mktemp("detection")
    prepare.main(["--params", json.dumps(PREPARE), "--out", str(root / "prepared")])
    manifest = root / "prepared" / "manifest.csv"
    task_model = root / "task" / "model.pt"
    train_task.main(["--task", "detection", "--params", json.dumps(TASK), *RUN, "--manifest", str(manifest), "--out", str(task_model)])
    return root, manifest, task_model


def cache_and_evaluate(root, manifest, task_model, codec, name):
    cache = root / "cache" / name / "test"
    cache_latents.main(["--params", json.dumps({"shard_size": 4, "decode_check": 2}), *RUN, "--model", str(codec),
                        "--manifest", str(manifest), "--split", "test", "--out", str(cache)])
    out = root / "eval" / name / "test"
    evaluate_codec.main(["--params", json.dumps(EVALUATE), *RUN, "--model", str(codec), "--cache", str(cache),
                         "--codec-id", name, "--task-model", str(task_model), "--out", str(out)])
    return cache, out


def map_from_per_image(rows: pd.DataFrame) -> dict[str, float]:
    """torchmetrics' mAP of the boxes per_image.csv records (targets in ``label``, detections in ``pred``)."""
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    for label, pred in zip(rows["label"], rows["pred"]):
        target, found = json.loads(label), json.loads(pred)
        metric.update([{"boxes": torch.tensor(found["boxes"]).reshape(-1, 4), "scores": torch.tensor(found["scores"]),
                        "labels": torch.tensor(found["labels"], dtype=torch.int64)}],
                      [{"boxes": torch.tensor(target["boxes"]).reshape(-1, 4),
                        "labels": torch.tensor(target["labels"], dtype=torch.int64)}])
    result = metric.compute()
    return {"map_50": float(result["map_50"]), "map": float(result["map"])}


def test_the_report_gives_the_map_of_each_point_over_its_images(detection):
    root, manifest, task_model = detection
    codec = root / "codec" / "model.pt"
    train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "bmshj2018-hyperprior", "--hyper",
                      '{"N": 8, "M": 12}', "--lmbda", "0.01", "--manifest", str(manifest), "--out", str(codec)])
    cache, learned = cache_and_evaluate(root, manifest, task_model, codec, "hyperprior")
    objects = read_manifest(manifest).set_index("image_id")["objects"]
    index = read_table(cache / "index.csv").set_index("image_id")
    assert index["objects"].to_dict() == objects[index.index].to_dict()  # the task's fields travel with the cache
    classical = root / "eval" / "jpeg" / "test"
    evaluate_classical.main(["--params", json.dumps({**EVALUATE, "qualities": [5, 90]}), *RUN, "--codec", "jpeg",
                             "--manifest", str(manifest), "--split", "test", "--task-model", str(task_model),
                             "--out", str(classical)])
    machine = root / "machine"
    report_task.main(["--params", json.dumps(REPORT), "--task-model", str(task_model), "--manifest", str(manifest),
                      "--classical", str(classical), "--pretrained", str(learned), "--out", str(machine)])

    points = read_table(machine / "rate_accuracy.csv").set_index(["codec", "point"])
    measured = [folder / "task" / "detection" for folder in (learned, classical)]  # each evaluation's task table
    per_image = pd.concat([read_table(folder / "per_image.csv") for folder in measured])
    assert len(points) == 3 and {"map_50", "map"} <= set(per_image.columns)
    for (codec_id, point), rows in per_image.groupby(["codec", "point"]):
        expected = map_from_per_image(rows)
        for name in ("map_50", "map"):  # the recorded boxes and scores are the detector's float32 values
            assert points.loc[(codec_id, point), name] == pytest.approx(expected[name], abs=1e-6), (codec_id, name)
    assert points["map_50"].max() > 0.05  # detections that find objects, so the comparison above says something
    # ...and the mAP over the images is no mean of per-image APs (which count every image alike)
    mean_ap = per_image[per_image["codec"] == "jpeg"].groupby("point")["map_50"].mean()
    assert all(abs(points.loc[("jpeg", q), "map_50"] - mean_ap[q]) > 0.01 for q in (5, 90))
    summary = json.loads((machine / "summary.json").read_text())
    metrics = json.loads((task_model.parent / "metrics.json").read_text())
    assert summary["primary_metric"] == "map_50" and summary["uncompressed_map_50"] == metrics["test_map_50"]
    learned_summary = json.loads((measured[0] / "summary.json").read_text())
    assert learned_summary["map_50"] == learned_summary["task_metrics"][0]["map_50"] == pytest.approx(points.loc[
        ("hyperprior", 0.01), "map_50"], rel=1e-12)
    assert set(read_table(machine / "bits_for_accuracy.csv")["codec"]) == {"hyperprior", "jpeg"}


def test_a_scalable_codec_is_measured_for_the_task_from_its_base_layer_alone(detection):
    root, manifest, task_model = detection
    detector, info = load_task_model(task_model)
    torch.manual_seed(0)
    scalable = build_codec("scalable-hyperprior", SCALABLE, task_model=detector).eval()
    scalable.update(force=True)
    path = root / "scalable" / "model.pt"
    save_codec(path, scalable, "scalable-hyperprior", SCALABLE, 0.01, {}, {},
               task_model={"task": "detection", "model_params": FCOS, "class_names": info["class_names"]})
    cache, learned = cache_and_evaluate(root, manifest, task_model, path, "scalable")

    table = read_table(learned / "task" / "detection" / "per_image.csv").set_index("image_id")
    index = read_table(cache / "index.csv").set_index("image_id")
    pixels = 64 * 64
    assert (table["bytes_task"] == index["bytes_base"]).all()  # the task receiver downloads the base layer
    assert table["bpp_task"].tolist() == pytest.approx((8 * index["bytes_base"] / pixels).tolist())
    assert table["bpp"].tolist() == pytest.approx((8 * (index["bytes_base"] + index["bytes_enh"]) / pixels).tolist())
    model, _ = load_codec(path)
    task = info["task"]
    image_id, parts = next(read_bitstreams(cache, model.layers))
    base = decode_images(model, [{"base": ImageBitstream.from_bytes(parts["base"])}], pixels=False)
    expected = task.predictions(model.task_outputs(base.latents))[0]
    assert json.loads(table.loc[image_id, "pred"]) == expected  # the base layer's detections, not the picture's

    machine = root / "machine-scalable"
    report_task.main(["--params", json.dumps(REPORT), "--task-model", str(task_model), "--manifest", str(manifest),
                      "--scalable", str(learned), "--out", str(machine)])
    point = read_table(machine / "rate_accuracy.csv").iloc[0]
    # seed 002's qualitative figure: the detector on the original, on the base layer alone, on both layers
    assert (machine / "boxes.png").stat().st_size > 0 and "![boxes](boxes.png)" in (machine / "README.md").read_text()
    assert point["bpp"] == pytest.approx(table["bpp_task"].mean()) and point["bpp"] < point["bpp_image"]
    assert point["bpp_image"] == pytest.approx(table["bpp"].mean())


def test_the_detector_inside_a_scalable_codec_stays_frozen_while_the_codec_trains(detection):
    _, _, task_model = detection
    detector, _ = load_task_model(task_model)
    codec = build_codec("scalable-hyperprior", SCALABLE, task_model=detector).train()
    before = {key: value.clone() for key, value in codec.task_model.state_dict().items()}
    first_layer = codec.g_a_base[0].weight.clone()
    optimizer = torch.optim.Adam([p for name, p in codec.named_parameters() if not name.endswith(".quantiles")], 1e-3)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        optimizer.zero_grad()
        ScalableLoss(0.01, task_lmbda=1.0)(codec(x), x)["loss"].backward()
        optimizer.step()
    assert not codec.task_model.training  # its normalisation layers stay in eval mode
    assert all(torch.equal(value, before[key]) for key, value in codec.task_model.state_dict().items())
    assert not torch.equal(codec.g_a_base[0].weight, first_layer)


FINETUNE = {"steps": 6, "batch_size": 4, "lr": 1e-4, "aux_lr": 1e-3, "clip_max_norm": 1.0, "task_weight": 1.0,
            "crop_padding": 2, "saliency_floor": None, "time_budget_s": None, "val_every": 3, "checkpoint_every": 3,
            "seed": 0, "lr_drop_at": [0.75], "lr_gamma": 0.3}


def test_a_codec_fine_tuned_through_the_frozen_detector_trains_on_its_loss(detection):
    root, manifest, task_model = detection
    codec = root / "codec-ft" / "model.pt"
    train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "bmshj2018-hyperprior", "--hyper",
                      '{"N": 8, "M": 12}', "--lmbda", "0.01", "--manifest", str(manifest), "--out", str(codec)])
    out = finetune_codec.main(["--params", json.dumps(FINETUNE), *RUN, "--model", str(codec), "--task-model",
                               str(task_model), "--tau", "1", "--manifest", str(manifest),
                               "--out", str(root / "finetuned" / "model.pt")])
    log = pd.read_csv(out.parent / "train_log.csv")
    train_rows = log[log["split"] == "train"]
    # the detection loss on the boxes moved with each translated, flipped window, and the batch's mAP
    assert len(train_rows) == 6 and (train_rows["task_loss"] > 0).all() and train_rows["accuracy"].between(0, 1).all()
    assert json.loads((out.parent / "metrics.json").read_text())["task_classes"] == CLASSES
    cache_and_evaluate(root, manifest, task_model, out, "finetuned")

"""Several task models in one evaluation: a labeled detection dataset (each image's class: its largest object) ->
a classifier and a detector -> one codec -> evaluate_codec / evaluate_classical measuring both, each task in its own
table, read by report_task."""

import json

import pandas as pd
import pytest

from taskcodec.errors import UserError
from taskcodec.evaluation import read_table
from taskcodec.stages import (cache_latents, evaluate_classical, evaluate_codec, extract_features, prepare, report_task,
                              train_codec, train_task)

from stage_settings import EVALUATE, REPORT, RUN, TRAIN

PREPARE = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
           "seed": 0, "on_bad_image": "stop",
           "builtin": {"num_images": 40, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                       "object_scale": [0.35, 0.7], "objects": [1, 2], "labeled": True}}
SGD = {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
       "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 2, "seed": 0}
MODELS = {"classification": {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 2,
                             "weights": None},
          "detection": {"arch": "fcos-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "head_width": 16,
                        "split_stage": 1, "weights": None}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    prepare.main(["--params", json.dumps(PREPARE), "--out", str(root / "prepared")])
    manifest = root / "prepared" / "manifest.csv"
    models, features = {}, {}
    for task, model in MODELS.items():
        models[task] = train_task.main(["--task", task, "--params", json.dumps({"model": model, "train": SGD}), *RUN,
                                        "--manifest", str(manifest), "--out", str(root / "task" / task / "model.pt")])
        features[task] = extract_features.main(["--params", json.dumps({"layer": "stage1", "batch_size": 16}), *RUN,
                                                "--task-model", str(models[task]), "--manifest", str(manifest),
                                                "--out", str(root / "task" / task / "features")])
    codec = train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "bmshj2018-hyperprior", "--hyper",
                              '{"N": 8, "M": 12}', "--lmbda", "0.01", "--manifest", str(manifest),
                              "--out", str(root / "codec" / "model.pt")])
    cache = cache_latents.main(["--params", json.dumps({"shard_size": 4, "decode_check": 2}), *RUN, "--model",
                                str(codec), "--manifest", str(manifest), "--split", "test", "--no-latents",
                                "--out", str(root / "cache" / "test")])
    return root, manifest, codec, cache, models, features


def evaluate(root, codec, cache, models, features, tasks, name):
    return evaluate_codec.main(["--params", json.dumps(EVALUATE), *RUN, "--model", str(codec), "--cache", str(cache),
                                "--codec-id", "hyperprior", "--task-model", *[str(models[task]) for task in tasks],
                                "--features", *[str(features[task]) for task in tasks], "--out", str(root / name)])


def test_each_task_is_measured_in_its_own_table_as_if_it_were_alone(run):
    root, manifest, codec, cache, models, features = run
    both = evaluate(root, codec, cache, models, features, ["classification", "detection"], "both")
    alone = evaluate(root, codec, cache, models, features, ["detection"], "alone")
    images = read_table(both / "per_image.csv")
    assert {"bpp", "psnr", "ms_ssim"} <= set(images.columns)
    assert not {"label", "pred", "top1", "map_50", "feature_mse"} & set(images.columns)  # the tasks' own tables
    tables = {task: read_table(both / "task" / task / "per_image.csv") for task in MODELS}
    assert {"top1", "feature_mse"} <= set(tables["classification"].columns)
    assert {"map_50", "feature_mse"} <= set(tables["detection"].columns)
    for table in tables.values():  # each holds the image measures too, row for row
        pd.testing.assert_frame_equal(table[images.columns.drop("run_id")], images.drop(columns="run_id"))
    measured_alone = read_table(alone / "task" / "detection" / "per_image.csv")
    pd.testing.assert_frame_equal(tables["detection"].drop(columns="run_id"), measured_alone.drop(columns="run_id"))
    summary = json.loads((both / "task" / "classification" / "summary.json").read_text())
    assert summary["top1"] == summary["task_metrics"][0]["top1"] == pytest.approx(tables["classification"]["top1"].mean())
    assert "task_metrics" not in json.loads((both / "summary.json").read_text())
    assert not (alone / "task" / "classification").exists()
    labels = read_table(manifest).set_index("image_id")["label"]
    assert (tables["classification"].set_index("image_id")["label"] == labels[tables["classification"]["image_id"]]).all()


def test_the_classical_codecs_and_the_reports_of_each_task(run):
    root, manifest, codec, cache, models, features = run
    learned = evaluate(root, codec, cache, models, features, list(MODELS), "learned")
    classical = evaluate_classical.main(["--params", json.dumps({**EVALUATE, "qualities": [10, 90]}), *RUN, "--codec",
                                         "jpeg", "--manifest", str(manifest), "--split", "test", "--task-model",
                                         *[str(models[task]) for task in MODELS], "--out", str(root / "jpeg")])
    for task, metric in (("classification", "top1"), ("detection", "map_50")):
        table = read_table(classical / "task" / task / "per_image.csv")
        assert sorted(set(table["point"])) == [10, 90] and table[metric].notna().all()
        out = report_task.main(["--params", json.dumps(REPORT), "--task-model", str(models[task]), "--manifest",
                                str(manifest), "--classical", str(classical), "--pretrained", str(learned),
                                "--out", str(root / "machine" / task)])
        points = read_table(out / "rate_accuracy.csv")
        assert len(points) == 3 and metric in points.columns
    only_detection = evaluate(root, codec, cache, models, features, ["detection"], "only-detection")
    with pytest.raises(UserError, match="holds no measures of the classification task; rerun its evaluation"):
        report_task.main(["--params", json.dumps(REPORT), "--task-model", str(models["classification"]), "--manifest",
                          str(manifest), "--pretrained", str(only_detection), "--out", str(root / "nothing")])

"""VQA through the stages' main(): prepare with generated questions -> train_task (the attention VQA model) ->
extract_features; train_codec -> finetune_codec through the frozen VQA model -> cache_latents -> evaluate_codec /
evaluate_classical -> report_task, whose accuracy is VQA accuracy over every question of a point's images."""

import json

import pandas as pd
import pytest

from taskcodec.data.questions import FAMILIES
from taskcodec.evaluation import read_table
from taskcodec.stages import (cache_latents, evaluate_classical, evaluate_codec, extract_features, finetune_codec,
                              prepare, report_task, train_codec, train_task)

from stage_settings import EVALUATE, REPORT, RUN, TRAIN

PREPARE = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
           "seed": 0, "on_bad_image": "stop",
           "builtin": {"num_images": 40, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                       "object_scale": [0.35, 0.7], "objects": [1, 3], "questions": 4}}
VQA = {"arch": "san-resnet-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "weights": None,
       "embedding": 16, "hidden": 16, "attention_hidden": 16, "classifier_hidden": 16}
TASK = {"model": VQA,
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.002, "optimizer": "adam", "momentum": 0.9, "nesterov": True,
                  "weight_decay": 0.0, "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 3, "seed": 0}}
FINETUNE = {"steps": 4, "batch_size": 4, "lr": 1e-4, "aux_lr": 1e-3, "clip_max_norm": 1.0, "task_weight": 1.0,
            "crop_padding": 2, "saliency_floor": None, "time_budget_s": None, "val_every": 2, "checkpoint_every": 2,
            "seed": 0, "lr_drop_at": [0.75], "lr_gamma": 0.3}


@pytest.fixture(scope="module")
def vqa(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa")
    prepare.main(["--params", json.dumps(PREPARE), "--out", str(root / "prepared")])
    manifest = root / "prepared" / "manifest.csv"
    task_model = root / "task" / "model.pt"
    train_task.main(["--task", "vqa", "--params", json.dumps(TASK), *RUN, "--manifest", str(manifest), "--out", str(task_model)])
    return root, manifest, task_model


def accuracy_from_per_image(rows: pd.DataFrame) -> float:
    """VQA accuracy over every question of ``rows`` from per_image.csv's questions (``label``) and answers (``pred``),
    one answer per generated question."""
    credits = [answer == answers[0] for label, pred in zip(rows["label"], rows["pred"])
               for answers, answer in zip(json.loads(label)["answers"], json.loads(pred))]
    return sum(credits) / len(credits)


def test_the_vqa_model_trains_on_the_questions_and_its_features_are_cached(vqa):
    root, manifest, task_model = vqa
    metrics = json.loads((task_model.parent / "metrics.json").read_text())
    answers = json.loads((manifest.parent / "answers.json").read_text())
    assert metrics["task"] == "vqa" and metrics["class_names"] == answers
    assert {"test_accuracy", "test_accuracy_yes_no", "test_accuracy_number", "test_accuracy_other"} <= set(metrics)
    losses = pd.read_csv(task_model.parent / "train_log.csv")["train_loss"]
    assert losses.iloc[-1] < losses.iloc[0]
    features = extract_features.main(["--params", json.dumps({"layer": "trunk.stage2", "batch_size": 8}), *RUN,
                                      "--task-model", str(task_model), "--manifest", str(manifest),
                                      "--out", str(root / "features")])
    assert (features / "features.json").is_file()


def test_codecs_are_measured_and_fine_tuned_by_vqa_accuracy(vqa):
    root, manifest, task_model = vqa
    codec = root / "codec" / "model.pt"
    train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "bmshj2018-hyperprior", "--hyper",
                      '{"N": 8, "M": 12}', "--lmbda", "0.01", "--manifest", str(manifest), "--out", str(codec)])
    tuned = finetune_codec.main(["--params", json.dumps(FINETUNE), *RUN, "--model", str(codec), "--task-model",
                                 str(task_model), "--tau", "1", "--manifest", str(manifest),
                                 "--out", str(root / "finetuned" / "model.pt")])
    log = pd.read_csv(tuned.parent / "train_log.csv")
    train_rows = log[log["split"] == "train"]
    assert len(train_rows) == 4 and (train_rows["task_loss"] > 0).all() and train_rows["accuracy"].between(0, 1).all()
    evaluated = {}
    for name, model in (("pretrained", codec), ("finetuned", tuned)):
        cache = root / "cache" / name
        cache_latents.main(["--params", json.dumps({"shard_size": 4, "decode_check": 2}), *RUN, "--model", str(model),
                            "--manifest", str(manifest), "--split", "test", "--out", str(cache)])
        evaluated[name] = root / "eval" / name
        evaluate_codec.main(["--params", json.dumps(EVALUATE), *RUN, "--model", str(model), "--cache", str(cache),
                             "--codec-id", name, "--task-model", str(task_model), "--out", str(evaluated[name])])
    classical = root / "eval" / "jpeg"
    evaluate_classical.main(["--params", json.dumps({**EVALUATE, "qualities": [5, 90]}), *RUN, "--codec", "jpeg",
                             "--manifest", str(manifest), "--split", "test", "--task-model", str(task_model),
                             "--out", str(classical)])
    machine = root / "machine"
    report_task.main(["--params", json.dumps(REPORT), "--task-model", str(task_model), "--manifest", str(manifest),
                      "--classical", str(classical), "--pretrained", str(evaluated["pretrained"]),
                      "--finetuned", str(evaluated["finetuned"]), "--out", str(machine)])

    points = read_table(machine / "rate_accuracy.csv").set_index(["codec", "point"])
    per_image = pd.concat([read_table(folder / "task" / "vqa" / "per_image.csv")
                           for folder in (*evaluated.values(), classical)])
    assert len(points) == 4 and {"accuracy", "accuracy_yes_no"} <= set(per_image.columns)
    for (codec_id, point), rows in per_image.groupby(["codec", "point"]):  # over questions, not a mean of images
        assert points.loc[(codec_id, point), "accuracy"] == pytest.approx(accuracy_from_per_image(rows)), codec_id
    summary = json.loads((machine / "summary.json").read_text())
    assert summary["primary_metric"] == "accuracy"
    assert summary["uncompressed_accuracy"] == json.loads((task_model.parent / "metrics.json").read_text())[
        "test_accuracy"]
    # accuracy per question type: every generated question has its family, so the families' accuracies weighted by
    # their questions give each point's accuracy, and the uncompressed images' (answered by the report) the
    # task model's own test accuracy
    by_group = read_table(machine / "by_group.csv")
    assert set(by_group["group"]) <= set(FAMILIES) and (by_group["items"] > 0).all()
    for (kind, codec_id, point), rows in by_group.groupby(["kind", "codec", "point"], dropna=False):
        overall = (rows["accuracy"] * rows["items"]).sum() / rows["items"].sum()
        expected = summary["uncompressed_accuracy"] if kind == "uncompressed" else points.loc[(codec_id, point),
                                                                                              "accuracy"]
        assert overall == pytest.approx(expected), (kind, codec_id, point)
    assert set(by_group["kind"]) == {"uncompressed", "pretrained", "finetuned", "classical"}
    assert "accuracy by question type" in (machine / "README.md").read_text()
    # seed 000's Figure 4: a question on the original and on both codecs' reconstructions, with the top answers
    assert (machine / "qualitative.png").stat().st_size > 0

"""train_task -> extract_features, and cache_latents -> train_latent_classifier -> train_joint_classifier, via main()."""

import json

import pandas as pd
import pytest
import torch

from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.registry import build_codec
from taskcodec.errors import UserError
from taskcodec.evaluation import read_table
from taskcodec.stages import (cache_latents, extract_features, prepare, train_joint_classifier,
                              train_latent_classifier, train_task)
from taskcodec.tasks.checkpoint import load_latent_classifier, load_task_model

from stage_settings import RUN

TASK = {
    "model": {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 1, "weights": None},
    "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
              "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 1, "seed": 0},
}
FEATURES = {"layer": "stage2", "batch_size": 16}
LATENT = {
    "model": {"arch": "cresnet", "width": 8, "blocks": [1, 1, 1]},
    "train": {**TASK["train"], "crop_padding": 0},
}
JOINT = {"epochs": 1, "batch_size": 8, "lr": 1e-4, "aux_lr": 1e-3, "rate_weight": 0.1, "crop_padding": 2,
         "clip_max_norm": 1.0, "time_budget_s": None, "checkpoint_every": 1, "seed": 0}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    params = {"dataset": "builtin", "root": None, "image_size": 32, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "seed": 0, "builtin": {"num_images": 30, "canvas_size": 40, "classes": ["circle", "square", "ring"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    return root, root / "prepared" / "manifest.csv"


def test_train_task_writes_model_metrics_and_log(workspace):
    root, manifest = workspace
    out = root / "task" / "model.pt"
    assert train_task.main(["--task", "classification", "--params", json.dumps(TASK), *RUN, "--manifest", str(manifest), "--out", str(out)]) == out
    model, info = load_task_model(out, manifest=manifest)
    assert info["class_names"] == ["circle", "square", "ring"] and info["train_params"] == TASK["train"]
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["num_classes"] == 3 and 0 <= metrics["test_top1"] <= 1 and metrics["test_top5"] is None
    assert metrics["images"] == {"train": 18, "val": 6, "test": 6} and metrics["run_id"]
    log = pd.read_csv(out.parent / "train_log.csv")
    assert list(log["epoch"]) == [1, 2] and list(log["step"]) == [2, 4]  # 18 images in batches of 8
    assert metrics["epochs"] == 2 and metrics["steps"] == 4 and metrics["best_epoch"] in (1, 2)
    assert not (out.parent / "resume.pt").exists()

    features = extract_features.main(["--params", json.dumps(FEATURES), *RUN, "--task-model", str(out), "--manifest",
                                      str(manifest), "--out", str(root / "features")])
    test = torch.load(features / "test.pt")
    assert test["features"].shape == (6, 8, 16, 16) and len(test["image_ids"]) == 6 and test["layer"] == "stage2"
    assert json.loads((features / "features.json").read_text())["shapes"]["train"] == [18, 8, 16, 16]


def test_a_task_model_trained_from_the_files_is_the_one_trained_in_memory(workspace, tmp_path, capsys):
    _, manifest = workspace
    models = {}
    # MB: every split held in memory; none (each read from its files, by the training process, then with 2 threads:
    # the train split decoded ahead by a loader worker, PyTorch keeping one thread as the other runs had)
    for memory, threads in (("100", "1"), ("0", "1"), ("0", "2")):
        out = tmp_path / f"{memory}-{threads}" / "model.pt"
        train_task.main(["--task", "classification", "--params", json.dumps(TASK), *RUN[:-1], threads, "--mem-mb", memory, "--manifest",
                         str(manifest), "--out", str(out)])
        models[memory, threads] = load_task_model(out, manifest=manifest)[0].state_dict()
    said = capsys.readouterr().out
    assert "train images: 18 images held decoded in memory (0 MB)" in said
    assert "train images: 18 images read from their files by the training process (0 MB decoded > the budget " in said
    assert "train images: 18 images read from their files by 1 loader worker (0 MB decoded > the budget " in said
    assert "test images: 6 images read from their files by the training process" in said
    for key, value in models["100", "1"].items():
        assert torch.equal(value, models["0", "1"][key]) and torch.equal(value, models["0", "2"][key]), key


def test_unlabeled_dataset_is_refused(workspace, tmp_path):
    _, manifest = workspace
    frame = pd.read_csv(manifest).assign(label=-1, class_name="")
    unlabeled = manifest.parent / "unlabeled.csv"
    frame.to_csv(unlabeled, index=False)
    with pytest.raises(UserError, match="the task needs a labeled dataset \\(class subfolders"):
        train_task.main(["--task", "classification", "--params", json.dumps(TASK), *RUN, "--manifest", str(unlabeled), "--out", str(tmp_path / "m.pt")])


def test_latent_and_joint_classifiers_on_real_bitstreams(workspace):
    root, manifest = workspace
    torch.manual_seed(0)
    codec = build_codec("bmshj2018-hyperprior", {"N": 8, "M": 12}).eval()
    codec.update(force=True)
    codec_path = root / "codec" / "model.pt"
    save_codec(codec_path, codec, "bmshj2018-hyperprior", {"N": 8, "M": 12}, 0.01, {}, {})
    caches = {}
    for split in ("train", "val", "test"):
        caches[split] = cache_latents.main([
            "--params", json.dumps({"shard_size": 8, "decode_check": 2}), *RUN, "--model", str(codec_path),
            "--manifest", str(manifest), "--split", split, "--out", str(root / "cache" / split)])

    out = root / "latent" / "model.pt"
    train_latent_classifier.main(["--params", json.dumps(LATENT), *RUN, "--train-cache", str(caches["train"]),
                                  "--val-cache", str(caches["val"]), "--test-cache", str(caches["test"]),
                                  "--manifest", str(manifest), "--out", str(out)])
    model, info = load_latent_classifier(out, expect_num_classes=3)
    metrics = json.loads((out.parent / "metrics.json").read_text())
    index = read_table(caches["test"] / "index.csv")
    assert metrics["bpp"] == pytest.approx(index["bpp"].mean()) and metrics["latent_shape"] == [12, 4, 4]  # padded to 64×64
    assert metrics["latent_images_per_s"] > 0 and metrics["codec"] == "bmshj2018-hyperprior/N8-M12"
    assert info["latent_channels"] == 12
    assert metrics["epochs"] == 2 and metrics["steps"] == 4 and metrics["val_top1"] == max(
        pd.read_csv(out.parent / "train_log.csv")["val_top1"])
    mapped = root / "latent-mapped" / "model.pt"  # every cache's shards read as indexed, not loaded
    train_latent_classifier.main(["--params", json.dumps(LATENT), *RUN, "--mem-mb", "0", "--train-cache",
                                  str(caches["train"]), "--val-cache", str(caches["val"]), "--test-cache",
                                  str(caches["test"]), "--manifest", str(manifest), "--out", str(mapped)])
    streamed = load_latent_classifier(mapped, expect_num_classes=3)[0].state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, streamed[key]), key
    assert json.loads((mapped.parent / "metrics.json").read_text())["test_top1"] == metrics["test_top1"]

    joint = root / "joint"
    train_joint_classifier.main(["--params", json.dumps(JOINT), *RUN, "--model", str(codec_path), "--classifier", str(out),
                                 "--manifest", str(manifest), "--out", str(joint)])
    result = json.loads((joint / "metrics.json").read_text())
    # before fine-tuning, the real bitstreams are exactly the cached ones
    assert result["before_bpp"] == pytest.approx(index["bpp"].mean())
    assert result["bpp"] > 0 and 0 <= result["test_top1"] <= 1 and result["test_images"] == 6
    assert result["epochs"] == result["best_epoch"] == 1 and result["steps"] == 2 and not (joint / "resume.pt").exists()
    load_codec(joint / "codec.pt")
    load_latent_classifier(joint / "model.pt", expect_num_classes=3)
    read = root / "joint-read"  # every split read from its files, the train split ahead by a loader worker
    train_joint_classifier.main(["--params", json.dumps(JOINT), *RUN[:-1], "2", "--mem-mb", "0", "--model",
                                 str(codec_path), "--classifier", str(out), "--manifest", str(manifest), "--out",
                                 str(read)])
    assert json.loads((read / "metrics.json").read_text())["bpp"] == result["bpp"]
    for name in ("model.pt", "codec.pt"):
        streamed = torch.load(read / name, weights_only=True)["state_dict"]
        for key, value in torch.load(joint / name, weights_only=True)["state_dict"].items():
            assert torch.equal(value, streamed[key]), (name, key)


def test_latent_classifier_for_another_class_count_is_refused(workspace, tmp_path):
    root, manifest = workspace
    frame = pd.read_csv(manifest)
    frame.loc[frame["label"] == 2, ["label", "class_name"]] = [1, "square"]
    two = manifest.parent / "two.csv"
    frame.to_csv(two, index=False)
    latent = root / "latent" / "model.pt"
    if not latent.exists():
        pytest.skip("needs the latent classifier of the previous test")
    with pytest.raises(UserError, match="was trained for 3 classes but the dataset has 2"):
        train_joint_classifier.main(["--params", json.dumps(JOINT), *RUN, "--model", str(root / "codec" / "model.pt"),
                                     "--classifier", str(latent), "--manifest", str(two), "--out", str(tmp_path / "j")])

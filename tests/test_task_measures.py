import numpy as np
import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.evaluation import TaskMeasures, task_measures
from taskcodec.artifacts import file_digest, write_json
from taskcodec.tasks.checkpoint import save_task_model
from taskcodec.tasks.features import extract_features
from taskcodec.tasks.models import build_task_model

SMALL = {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 1, "weights": None}


@pytest.fixture
def task_files(tmp_path):
    torch.manual_seed(0)
    model = build_task_model(SMALL, 3).eval()
    save_task_model(tmp_path / "model.pt", model, "classification", SMALL, 3, ["a", "b", "c"], {}, {})
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    features = extract_features(model, torch.from_numpy(images).permute(0, 3, 1, 2), "stage2", 2, torch.device("cpu"))
    torch.save({"features": features, "image_ids": ["x", "y"], "labels": torch.tensor([0, 1]), "layer": "stage2"},
               tmp_path / "test.pt")
    write_json(tmp_path / "features.json", {"layer": "stage2", "task_model_sha256": file_digest(tmp_path / "model.pt")})
    return tmp_path, images


def test_task_measures_add_the_feature_distortion_of_the_reconstruction(task_files):
    folder, images = task_files
    task = TaskMeasures(folder / "model.pt", torch.device("cpu"), folder / "test.pt")
    same = task.measure("x", {"label": 0}, images[0], images[0])
    assert same["feature_mse"] < 1e-10 and np.isnan(same["top5"])  # top-5 needs at least 5 classes
    noisy = np.clip(images[0].astype(int) + np.random.default_rng(1).integers(-20, 21, images[0].shape), 0, 255)
    assert task.measure("x", {"label": 0}, images[0], noisy.astype(np.uint8))["feature_mse"] > 1e-4
    without_features = TaskMeasures(folder / "model.pt", "cpu")
    assert "feature_mse" not in without_features.measure("x", {"label": 0}, images[0], images[0])


def test_each_task_model_needs_its_own_features_folder_and_task(task_files):
    folder, _ = task_files
    with pytest.raises(UserError, match="--features names 1 folders for 0 task models; give one"):
        task_measures(None, [folder], "test", "cpu")
    with pytest.raises(UserError, match=r"are of the tasks \['classification', 'classification'\]; give one model per"):
        task_measures([folder / "model.pt"] * 2, None, "test", "cpu")
    (measures,) = task_measures([folder / "model.pt"], [folder], "test", "cpu")
    assert measures.name == "classification" and measures.columns[-1] == "feature_mse"  # folder/test.pt


def test_summaries_per_point_are_the_means_of_the_per_image_scores_for_classification(task_files):
    folder, images = task_files
    task = TaskMeasures(folder / "model.pt", "cpu")
    rows = {point: [task.measure(image_id, {"label": label}, image, image, point)
                    for image_id, label, image in zip("xy", (0, 1), images)] for point in (10, 90)}
    logits = torch.tensor([[0.0, 5.0, 0.0]])  # outputs a codec computed itself: class 1, whatever the image
    given = task.measure("x", {"label": 1}, images[0], images[0], 50, outputs=logits)
    assert given["pred"] == 1 and given["top1"] == 1.0
    summaries = task.summarize()
    assert [s["point"] for s in summaries] == [10, 50, 90] and [s["images"] for s in summaries] == [2, 1, 2]
    for summary in (summaries[0], summaries[2]):
        assert summary["top1"] == np.mean([row["top1"] for row in rows[summary["point"]]])

"""The task plug-in contract: the classification task's loss, scores and captions, and the registry."""

import math

import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.tasks.registry import TASKS, build_task


def test_classification_scores_top1_and_top5_per_sample():
    task = build_task("classification", list("abcdef"))
    outputs = torch.tensor([[0.0, 3.0, 1.0, -2.0, 0.5, 0.2], [5.0, 0.0, 0.0, 0.0, 0.0, 4.0]])
    scores = task.scores(outputs, torch.tensor([1, 5]))
    assert scores["top1"].tolist() == [1.0, 0.0] and scores["top5"].tolist() == [1.0, 1.0]
    assert task.predictions(outputs).tolist() == [1, 0]
    assert task.loss(outputs, torch.tensor([1, 5])).item() == pytest.approx(
        torch.nn.functional.cross_entropy(outputs, torch.tensor([1, 5])).item())


def test_top5_is_undefined_with_fewer_than_five_classes():
    scores = build_task("classification", ["a", "b"]).scores(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert scores["top1"].item() == 0.0 and math.isnan(scores["top5"].item())


def test_describe_lists_the_most_probable_classes():
    text = build_task("classification", list("abcd")).describe(torch.tensor([0.0, 3.0, 1.0, -2.0]), 1)
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == ["b", "c", "a"]
    assert lines[0].endswith("84%")


def test_an_unknown_task_suggests_the_closest_name():
    assert "classification" in TASKS
    with pytest.raises(UserError, match="did you mean 'classification'"):
        build_task("clasification", ["a"])


def test_a_label_outside_the_task_models_classes_is_a_clear_error():
    """A task checkpoint of another dataset (fewer classes) in an evaluation stage: one sentence, not top-1 = 0."""
    task = build_task("classification", ["circle", "square"])
    assert task.target({"label": 1}, None) == 1
    with pytest.raises(UserError, match="label 4 is outside the 2 classes the task model was trained for"):
        task.target({"label": 4}, None)

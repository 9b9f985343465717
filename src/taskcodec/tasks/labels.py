"""Class labels of a prepared dataset, and the check that a task has labels to learn from."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from taskcodec.artifacts import read_json
from taskcodec.data.manifest import ANSWERS_FILE, OBJECTS_COLUMN, QUESTIONS_COLUMN, read_manifest, task_classes
from taskcodec.errors import UserError

UNLABELED = -1


def require_labels(labels: torch.Tensor | list[int], where: str | os.PathLike) -> None:
    """Raise a :class:`UserError` if any image of ``where`` is unlabeled (label -1)."""
    labels = torch.as_tensor(labels)
    if labels.numel() == 0 or (labels == UNLABELED).any():
        raise UserError(f"{where} has unlabeled images; the task needs a labeled dataset (class subfolders "
                        "<root>/<class>/*.png with prepare.dataset: imagefolder, or the builtin dataset)")


def class_names(manifest_path: str | os.PathLike, task: str) -> list[str]:
    """The classes a model of the registered task ``task`` predicts on the dataset of ``manifest_path``, indexed by
    label: the manifest's ``label`` and ``class_name`` columns; a dataset without labels or with one class is a
    :class:`UserError` (:func:`task_classes`). A detection dataset's are every class of its ``classes.json``,
    whether or not a split shows it. A task that answers questions (VQA) answers from the dataset's answer
    vocabulary (``answers.json``: the train split's answers, most frequent first), even when it has boxes too."""
    from taskcodec.tasks.registry import TASKS

    frame = read_manifest(manifest_path)
    if QUESTIONS_COLUMN in TASKS[task].sample_fields:
        if QUESTIONS_COLUMN not in frame.columns:
            raise UserError(f"the {task} task needs questions, but the dataset of {manifest_path} has none; set "
                            "prepare.builtin.questions (or prepare.questions with an image folder) and rerun prepare")
        answers = read_json(Path(manifest_path).resolve().parent / ANSWERS_FILE)
        if not answers:
            raise UserError(f"the question dataset of {manifest_path} has no answers in its train split; give the "
                            "training images questions (prepare.questions or prepare.builtin.questions) and rerun "
                            "prepare")
        return list(answers)
    if OBJECTS_COLUMN in frame.columns:
        names = read_json(Path(manifest_path).resolve().parent / "classes.json")
        if not names:
            raise UserError(f"the detection dataset of {manifest_path} has no classes; give prepare.annotations "
                            "categories (or prepare.builtin.classes) and rerun prepare")
        return list(names)
    task_classes(manifest_path)
    require_labels(torch.as_tensor(frame["label"].to_numpy()), manifest_path)
    names = dict(zip(frame["label"], frame["class_name"]))
    if sorted(names) != list(range(len(names))):
        raise UserError(f"manifest {manifest_path} has labels {sorted(names)}, not 0..K-1; rerun prepare")
    return [names[label] for label in range(len(names))]

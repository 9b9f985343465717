"""Class labels of a prepared dataset, and the check that a task has labels to learn from."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from taskcodec.artifacts import read_json
from taskcodec.data.manifest import OBJECTS_COLUMN, read_manifest, task_classes
from taskcodec.errors import UserError

UNLABELED = -1


def require_labels(labels: torch.Tensor | list[int], where: str | os.PathLike) -> None:
    """Raise a :class:`UserError` if any image of ``where`` is unlabeled (label -1)."""
    labels = torch.as_tensor(labels)
    if labels.numel() == 0 or (labels == UNLABELED).any():
        raise UserError(f"{where} has unlabeled images; the task needs a labeled dataset (class subfolders "
                        "<root>/<class>/*.png with prepare.dataset: imagefolder, or the builtin dataset)")


def class_names(manifest_path: str | os.PathLike) -> list[str]:
    """The dataset's class names, indexed by label, from the manifest's ``label`` and ``class_name`` columns;
    a dataset without labels or with one class is a :class:`UserError` (:func:`task_classes`). A detection
    dataset's are every class of its ``classes.json``, whether or not a split shows it."""
    frame = read_manifest(manifest_path)
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

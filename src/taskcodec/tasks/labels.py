"""Class labels of a prepared dataset, and the check that a task has labels to learn from."""

from __future__ import annotations

import os

import torch

from taskcodec.data.manifest import read_manifest, task_classes
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
    a dataset without labels or with one class is a :class:`UserError` (:func:`task_classes`)."""
    task_classes(manifest_path)
    frame = read_manifest(manifest_path)
    require_labels(torch.as_tensor(frame["label"].to_numpy()), manifest_path)
    names = dict(zip(frame["label"], frame["class_name"]))
    if sorted(names) != list(range(len(names))):
        raise UserError(f"manifest {manifest_path} has labels {sorted(names)}, not 0..K-1; rerun prepare")
    return [names[label] for label in range(len(names))]

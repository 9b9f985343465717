"""Train/val/test splits and the manifest CSV that lists a prepared dataset.

The manifest has one row per image with exactly :data:`MANIFEST_COLUMNS`;
``path`` names where the image's bytes are (relative to the manifest's folder; see
:mod:`taskcodec.data.stored` for the three ways ``prepare.storage`` stores them), ``label`` is -1 and
``class_name`` is ``''`` for unlabeled images. A detection dataset's manifest
has one more column, :data:`OBJECTS_COLUMN`: each image's objects as JSON,
``{"boxes": [[x0, y0, x1, y1], ...], "labels": [k, ...]}`` (pixel edges of the
prepared image; labels index ``classes.json``), the form torchvision's
detection models take as targets. A dataset with questions (visual question
answering) has :data:`QUESTIONS_COLUMN` (after ``objects`` when both are there):
each image's questions as a JSON list, ``[{"question": str, "answers": [str, ...],
"type": "yes/no" | "number" | "other", "family": str}, ...]`` (``[]`` for an image
without questions), and beside the manifest :data:`ANSWERS_FILE`, the answer
vocabulary (:func:`answer_vocabulary` of the train split).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from taskcodec.artifacts import atomic_path, read_json
from taskcodec.data.stored import StoredImage
from taskcodec.errors import UserError

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("image_id", "path", "label", "class_name", "split", "source", "orig_width", "orig_height")
OBJECTS_COLUMN = "objects"
QUESTIONS_COLUMN = "questions"
OPTIONAL_COLUMNS = (OBJECTS_COLUMN, QUESTIONS_COLUMN)  # after MANIFEST_COLUMNS, in this order, when present
ANSWER_TYPES = ("yes/no", "number", "other")  # VQA v1's answer types
ANSWERS_FILE = "answers.json"  # beside a question dataset's manifest: its answer vocabulary, a JSON list


def check_split_fractions(fractions: Mapping[str, Any]) -> dict[str, float]:
    """Validate ``prepare.split``: exactly train/val/test, each > 0, summing to 1 (within 1e-6)."""
    if not isinstance(fractions, Mapping) or set(fractions) != set(SPLITS):
        raise UserError(f"prepare.split is {fractions!r}; give fractions for exactly {', '.join(SPLITS)}")
    values = {}
    for name in SPLITS:
        value = fractions[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise UserError(f"prepare.split.{name} is {value!r}; set it to a fraction between 0 and 1 (exclusive)")
        values[name] = float(value)
    total = sum(values.values())
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"prepare.split fractions sum to {total:g}, not 1; adjust train/val/test")
    return values


def split_sizes(num_images: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """How many images each split gets (largest-remainder rounding); a split left empty is a UserError."""
    if num_images < len(SPLITS):
        raise UserError(
            f"the dataset has {num_images} usable image(s) but train/val/test need at least one each; add images"
        )
    exact = {name: num_images * fractions[name] for name in SPLITS}
    sizes = {name: math.floor(exact[name]) for name in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda name: (-(exact[name] - sizes[name]), SPLITS.index(name)))
    for name in by_remainder[: num_images - sum(sizes.values())]:
        sizes[name] += 1
    for name in SPLITS:
        if sizes[name] == 0:
            raise UserError(
                f"prepare.split.{name} = {fractions[name]:g} of {num_images} usable images is {exact[name]:.2g} "
                f"image(s), which rounds to an empty {name} split; raise it to at least 1/{num_images} "
                f"or use at least {math.ceil(1 / fractions[name] - 1e-9)} images"
            )
    return sizes


def assign_splits(labels: Sequence[int], fractions: Mapping[str, Any], seed: int) -> list[str]:
    """The split of each image, stratified by label and reproducible from ``seed``.

    Each class's images are shuffled and spread evenly over [0, 1); all
    images are ordered by that position and cut into train, val and test.
    Every prefix of that order holds the classes in proportion, so each
    split does too (to within one image per class), and the split sizes are
    exact.
    """
    sizes = split_sizes(len(labels), check_split_fractions(fractions))
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    position = np.empty(len(labels), dtype=np.float64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        offset = rng.uniform()
        position[members] = (np.arange(len(members)) + offset) / len(members)
    tie_break = rng.permutation(len(labels))
    order = np.lexsort((tie_break, position))
    splits = np.empty(len(labels), dtype=object)
    start = 0
    for name in SPLITS:
        splits[order[start : start + sizes[name]]] = name
        start += sizes[name]
    return splits.tolist()


def write_manifest(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write manifest rows (mappings with exactly :data:`MANIFEST_COLUMNS`, every one with
    :data:`OBJECTS_COLUMN` too for a detection dataset, :data:`QUESTIONS_COLUMN` for one with questions)
    as CSV, atomically."""
    rows = list(rows)
    columns = [*MANIFEST_COLUMNS, *(column for column in OPTIONAL_COLUMNS if rows and column in rows[0])]
    for row in rows:
        if set(row) != set(columns):
            raise ValueError(f"manifest row has keys {sorted(row)}, expected {columns}")
    frame = pd.DataFrame(rows, columns=columns)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest` (with its objects and questions columns if it has them)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist; run the prepare stage first")
    try:
        frame = pd.read_csv(
            path,
            dtype={"image_id": str, "path": str, "class_name": str, "split": str, "source": str,
                   **dict.fromkeys(OPTIONAL_COLUMNS, str)},
            keep_default_na=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"manifest {path} cannot be parsed ({err}); delete it and rerun prepare") from None
    missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
    if missing:
        raise UserError(f"manifest {path} lacks column(s) {', '.join(missing)}; delete it and rerun prepare")
    frame = frame[[*MANIFEST_COLUMNS, *(column for column in OPTIONAL_COLUMNS if column in frame.columns)]]
    try:
        return frame.astype({"label": "int64", "orig_width": "int64", "orig_height": "int64"})
    except ValueError as err:
        raise UserError(f"manifest {path} has a non-integer label or size ({err}); delete it and rerun prepare") from None


def objects_json(boxes: Sequence[Sequence[float]], labels: Sequence[int]) -> str:
    """The :data:`OBJECTS_COLUMN` cell of an image: boxes rounded to 1/100 pixel."""
    return json.dumps({"boxes": [[round(float(v), 2) for v in box] for box in boxes],
                       "labels": [int(label) for label in labels]}, separators=(",", ":"))


def parse_objects(cell: str, where: str) -> dict[str, list]:
    """An :data:`OBJECTS_COLUMN` cell as ``{"boxes": [[x0, y0, x1, y1], ...], "labels": [...]}``."""
    try:
        objects = json.loads(cell)
        if (len(objects["boxes"]) != len(objects["labels"])
                or any(len(box) != 4 for box in objects["boxes"])):
            raise ValueError("boxes and labels differ in number or shape")
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where} has malformed objects {cell[:80]!r} ({err}); delete it and rerun prepare") from None
    return objects


def questions_json(questions: Sequence[Mapping[str, Any]]) -> str:
    """The :data:`QUESTIONS_COLUMN` cell of an image: its questions with exactly the four keys, answers as given."""
    return json.dumps([{"question": str(item["question"]), "answers": [str(answer) for answer in item["answers"]],
                        "type": str(item["type"]), "family": str(item["family"])} for item in questions],
                      separators=(",", ":"))


def parse_questions(cell: str, where: str) -> list[dict[str, Any]]:
    """A :data:`QUESTIONS_COLUMN` cell as ``[{"question": str, "answers": [str, ...], "type": str, "family": str}]``
    (see the module docstring); a malformed one is a :class:`UserError` naming ``where``."""
    try:
        questions = json.loads(cell)
        if not isinstance(questions, list):
            raise TypeError("not a list")
        for item in questions:
            if not (isinstance(item["question"], str) and isinstance(item["family"], str)
                    and isinstance(item["answers"], list) and item["answers"]
                    and all(isinstance(answer, str) for answer in item["answers"])):
                raise ValueError(f"question {item!r} lacks a question, family or answers")
            if item["type"] not in ANSWER_TYPES:
                raise ValueError(f"answer type {item['type']!r} is not one of {', '.join(ANSWER_TYPES)}")
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where} has malformed questions {cell[:80]!r} ({err}); delete it and rerun "
                        "prepare") from None
    return questions


def answer_vocabulary(questions: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every answer of ``questions`` (each occurrence in each ``answers`` list counts), most frequent first, ties in
    alphabetical order: the classes a VQA model answers with (:data:`ANSWERS_FILE`)."""
    counts = Counter(answer for item in questions for answer in item["answers"])
    return sorted(counts, key=lambda answer: (-counts[answer], answer))


def split_rows(manifest_path: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """The manifest rows of ``split`` (every column, ``path`` the :class:`~taskcodec.data.stored.StoredImage` to
    read), in manifest order."""
    rows = _split_frame(manifest_path, split)
    images = manifest_images(manifest_path, rows["path"])
    return [{**row, "path": image} for row, image in zip(rows.to_dict("records"), images)]


def split_images(manifest_path: str | os.PathLike, split: str) -> list[tuple[str, StoredImage, int]]:
    """``(image_id, image, label)`` for every image of ``split`` in the manifest; read an image with
    :func:`~taskcodec.data.stored.read_image`."""
    rows = _split_frame(manifest_path, split)
    images = manifest_images(manifest_path, rows["path"])
    return [(image_id, image, int(label)) for image_id, image, label in zip(rows["image_id"], images, rows["label"])]


def own_sizes(manifest_path: str | os.PathLike, split: str) -> list[tuple[int, int]] | None:
    """``(height, width)`` of each image of ``split``, in manifest order, when the split keeps its images' own
    sizes (the train split of ``prepare.keep_train_size: true``, as ``prepare.json`` beside the manifest records;
    the size is the manifest's original one), else None: every image is ``prepare.image_size``²."""
    summary = Path(manifest_path).resolve().parent / "prepare.json"
    if split != "train" or not summary.is_file() or not read_json(summary)["params"].get("keep_train_size", False):
        return None
    rows = _split_frame(manifest_path, split)
    return list(zip(rows["orig_height"].tolist(), rows["orig_width"].tolist()))


def _split_frame(manifest_path: str | os.PathLike, split: str) -> pd.DataFrame:
    """The manifest's rows of ``split``; an unknown or empty split is a :class:`UserError`."""
    if split not in SPLITS:
        raise UserError(f"split {split!r} is unknown; use one of {', '.join(SPLITS)}")
    frame = read_manifest(manifest_path)
    rows = frame[frame["split"] == split]
    if rows.empty:
        raise UserError(f"manifest {Path(manifest_path).resolve()} has no {split} images; rerun prepare with a "
                        "larger dataset")
    return rows


def manifest_images(manifest_path: str | os.PathLike, cells: Iterable[str] | None = None) -> list[StoredImage]:
    """The :class:`~taskcodec.data.stored.StoredImage` of each ``path`` cell (default: every row's, in manifest
    order)."""
    manifest_path = Path(manifest_path).resolve()
    if cells is None:
        cells = read_manifest(manifest_path)["path"]
    return [StoredImage.from_cell(cell, manifest_path.parent) for cell in cells]


def task_classes(manifest_path: str | os.PathLike) -> list[str]:
    """The class names of the prepared dataset behind ``manifest_path``, checked to be enough for a classifier.

    Every stage of the task branch calls this first: an unlabeled dataset or
    one with a single class is a UserError (a one-class "classifier" would
    score top-1 = 1.0). Reads ``prepare.json`` and ``classes.json`` beside
    the manifest.
    """
    folder = Path(manifest_path).resolve().parent
    summary = read_json(folder / "prepare.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("num_classes"), int):
        raise UserError(f"{folder / 'prepare.json'} does not record the number of classes; rerun prepare")
    classes = read_json(folder / "classes.json")
    if summary["num_classes"] == 0:
        raise UserError(
            f"the prepared dataset {folder} is unlabeled, but the task branch needs class labels; put the images "
            "in class folders (prepare.root/<class>/*.png, at least two) or remove classification from tasks"
        )
    if summary["num_classes"] < 2:
        raise UserError(
            f"the prepared dataset {folder} has only one class ({', '.join(map(repr, classes))}), but a task "
            "classifier needs at least two; add class folders under prepare.root or remove classification from tasks"
        )
    return list(classes)

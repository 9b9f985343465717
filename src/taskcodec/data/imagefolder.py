"""Datasets read from a folder of image files.

``prepare.dataset: imagefolder`` reads either ``root/<class>/**/*.<ext>``
(labeled; labels are the sorted class folder names) or images directly in
``root`` (unlabeled, label -1). Hidden files and folders are skipped; files
whose extension is not in :data:`IMAGE_EXTENSIONS` are ignored. With
``prepare.annotations`` (a COCO JSON file, :mod:`taskcodec.data.coco`) it is a
detection dataset: every image below ``root`` (any folder layout) with the boxes
the file gives it, unlabeled (-1), the file's categories as classes. With
``prepare.questions`` (a VQA-style JSON file, :mod:`taskcodec.data.vqa_annotations`)
each image also has the questions the file asks about it (none if it names it not).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from taskcodec.data.coco import Objects, read_coco
from taskcodec.data.images import IMAGE_EXTENSIONS, load_rgb8
from taskcodec.data.registry import UNLABELED, Sample, register_dataset, require_param
from taskcodec.data.vqa_annotations import read_vqa_questions
from taskcodec.errors import UserError, shown_path

_EXTENSION_LIST = "/".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)


def is_image_file(path: Path) -> bool:
    """True for a non-hidden file with an image extension (any case)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _visible_entries(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))


def _images_below(folder: Path) -> list[Path]:
    """Image files in ``folder`` and its non-hidden subfolders, sorted by relative path."""
    found = []
    for current, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(path for path in (Path(current) / name for name in files) if is_image_file(path))
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise UserError(f"image folder {shown_path(root)} does not exist; fix the path")
    if not root.is_dir():
        raise UserError(f"{shown_path(root)} is not a folder; point to a folder of images")


def _no_images(root: Path) -> UserError:
    """The error for a folder without image files: empty, or only files of other types."""
    others = []
    for current, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        others.extend(Path(current, name) for name in sorted(files) if not name.startswith("."))
    if not others:
        return UserError(f"image folder {shown_path(root)} is empty; add images ({_EXTENSION_LIST}) or fix the path")
    example = shown_path(others[0].relative_to(root))
    return UserError(
        f"image folder {shown_path(root)} has no supported images ({_EXTENSION_LIST}), only {len(others)} other "
        f"file(s) such as '{example}'; convert them to PNG or fix the path"
    )


def folder_images(root: str | os.PathLike) -> list[Path]:
    """All image files below ``root`` (flat or nested, recursive), sorted; for extra evaluation sets."""
    root = Path(root)
    _check_folder(root)
    images = _images_below(root)
    if not images:
        raise _no_images(root)
    return images


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """Return ``(classes, [(path, label), ...])`` for a labeled or flat folder of images.

    Labeled: no images at the top level, one folder per class. Flat: images
    at the top level only, labels are -1. Anything else is a UserError.
    """
    root = Path(root)
    _check_folder(root)
    entries = _visible_entries(root)
    top_images = [entry for entry in entries if is_image_file(entry)]
    class_folders = {entry.name: _images_below(entry) for entry in entries if entry.is_dir()}
    nonempty_folders = sorted(name for name, images in class_folders.items() if images)
    if top_images and nonempty_folders:
        raise UserError(
            f"image folder {shown_path(root)} mixes images at its top level with image subfolders "
            f"({', '.join(nonempty_folders[:5])}); put every image in a class folder (labeled) "
            f"or all of them at the top level (unlabeled)"
        )
    if top_images:
        return [], [(path, UNLABELED) for path in top_images]
    if not nonempty_folders:
        raise _no_images(root)
    empty_folders = sorted(set(class_folders) - set(nonempty_folders))
    if empty_folders:
        raise UserError(
            f"class folder(s) {', '.join(shown_path(root / name) for name in empty_folders)} contain no images "
            f"({_EXTENSION_LIST}); add images or remove the folder(s)"
        )
    classes = sorted(class_folders)
    return classes, [(path, label) for label, name in enumerate(classes) for path in class_folders[name]]


def _safe_name(text: str) -> str:
    """``text`` reduced to characters that are safe in a file name, at most 40 of them."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "image"


@register_dataset("imagefolder")
@dataclass(frozen=True)
class ImageFolderDataset:
    """``prepare.dataset: imagefolder``: the images under ``prepare.root`` (with boxes from ``prepare.annotations``,
    questions from ``prepare.questions``)."""

    root: Path
    classes: list[str]
    files: list[tuple[Path, int]]  # (image path, label), in a fixed order
    objects: dict[Path, Objects] | None = None  # with prepare.annotations: each image's boxes
    questions: dict[Path, list[dict[str, Any]]] | None = None  # with prepare.questions: each image's questions

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "ImageFolderDataset":
        root = require_param(params, "root")
        if root is None or root == "":
            raise UserError(
                "prepare.root is null but prepare.dataset is imagefolder; set prepare.root to a folder of images"
            )
        if not isinstance(root, str):
            raise UserError(f"prepare.root is {root!r}; set it to the path of a folder of images")
        resolved = _resolve(root)
        annotations = _file_param(params, "annotations", "a COCO JSON file")
        questions = _file_param(params, "questions", "a VQA-style JSON file")
        try:
            if annotations is None:
                classes, files = scan_image_folder(resolved)
            else:
                images = folder_images(resolved)
        except UserError as err:
            raise UserError(f"prepare.root: {err}") from None
        objects = None
        if annotations is not None:
            classes, objects = read_coco(annotations, resolved, images)
            files = [(path, UNLABELED) for path in images]
        return cls(root=resolved, classes=classes, files=files, objects=objects,
                   questions=None if questions is None else read_vqa_questions(
                       questions, resolved, [path for path, _ in files]))

    def samples(self) -> Iterator[Sample]:
        for index, (path, label) in enumerate(self.files):
            relative = path.relative_to(self.root)
            yield Sample(
                image_id=f"{index:06d}_{_safe_name(relative.with_suffix('').as_posix())}",
                label=label,
                source=shown_path(path),
                load=functools.partial(load_rgb8, path),
                file=path,
                objects=None if self.objects is None else functools.partial(self.objects.__getitem__, path),
                questions=None if self.questions is None else functools.partial(self.questions.__getitem__, path),
            )


def _resolve(path: str) -> Path:
    """A path from the params, relative to the working folder, with ``~`` expanded."""
    return (Path.cwd() / Path(path).expanduser()).resolve()


def _file_param(params: Mapping[str, Any], key: str, what: str) -> Path | None:
    """The resolved path ``prepare.<key>`` names, or None when it is absent or null."""
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"prepare.{key} is {value!r}; set it to the path of {what} or null")
    return _resolve(value)

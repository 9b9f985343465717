"""Object boxes of an image folder from a COCO JSON annotation file (``prepare.annotations``).

The COCO format (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014; the layout
pycocotools reads): ``images`` (``id``, ``file_name``), ``categories`` (``id``, ``name``) and
``annotations`` (``image_id``, ``category_id``, ``bbox`` = [x, y, width, height] in pixels of the
image file). ``file_name`` is the image's path relative to ``prepare.root``. The classes are every
category, in the order of their ids, so a class no image shows keeps its name and index; crowd
regions (``iscrowd: 1``) are left out, as COCO's detection evaluation ignores them.
"""

from __future__ import annotations

import json
from pathlib import Path

from taskcodec.errors import UserError, shown_path

#: an image's objects: ((x0, y0, x1, y1), class index) each, in pixels of the image file
Objects = tuple[tuple[tuple[float, float, float, float], int], ...]


def read_coco(path: Path, root: Path, images: list[Path]) -> tuple[list[str], dict[Path, Objects]]:
    """``(class names, {image path: objects})`` for every one of ``images`` (files below ``root``).

    A file that is missing or not COCO JSON, an entry naming an image that is not below ``root`` and an
    image below ``root`` without an entry are :class:`UserError` s naming the file and the fix.
    """
    if not path.is_file():
        raise UserError(f"prepare.annotations file {shown_path(path)} does not exist; fix the path or set it to null")
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        categories = sorted(coco["categories"], key=lambda category: category["id"])
        label_of = {category["id"]: index for index, category in enumerate(categories)}
        names = [str(category["name"]) for category in categories]
        file_of = {entry["id"]: root / entry["file_name"] for entry in coco["images"]}
        found: dict[Path, list] = {file: [] for file in file_of.values()}
        for annotation in coco["annotations"]:
            x, y, width, height = (float(v) for v in annotation["bbox"])
            if width <= 0 or height <= 0:
                raise ValueError(f"annotation {annotation.get('id')} has an empty bbox")
            if not annotation.get("iscrowd", 0):
                found[file_of[annotation["image_id"]]].append(
                    ((x, y, x + width, y + height), label_of[annotation["category_id"]]))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as err:
        raise UserError(f"prepare.annotations file {shown_path(path)} is not COCO JSON with images, categories and "
                        f"annotations ({type(err).__name__}: {err}); fix or re-export it") from None
    unknown = sorted(set(found) - set(images))
    if unknown:
        raise UserError(f"prepare.annotations file {shown_path(path)} lists image '{unknown[0].relative_to(root)}' "
                        f"({len(unknown)} in all) that is not under prepare.root {shown_path(root)}; fix its "
                        "file_name (relative to prepare.root) or add the image")
    unlisted = [image for image in images if image not in found]
    if unlisted:
        raise UserError(f"image '{unlisted[0].relative_to(root)}' under prepare.root ({len(unlisted)} in all) has no "
                        f"entry in prepare.annotations file {shown_path(path)}; add it to its images (with no "
                        "annotations if it shows no object) or remove it")
    return names, {image: tuple(found[image]) for image in images}


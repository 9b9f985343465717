"""Shared plumbing for the stage command-line modules.

Every stage module defines ``build_parser()`` and ``main(argv=None)``;
``main`` parses its arguments and does the work, so a test can call it
directly. ``run(main)`` is what ``if __name__ == "__main__"`` calls: it turns
a :class:`~taskcodec.errors.UserError` into one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from taskcodec.data.imagefolder import folder_images
from taskcodec.data.manifest import split_images
from taskcodec.errors import UserError


def params_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--params``: the stage's own params section as a JSON string."""
    parser.add_argument(
        "--params",
        required=True,
        type=_json_object,
        help="this stage's section of params.yaml, as a JSON object",
    )


def threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads``: CPU threads the stage may use (Snakemake passes the rule's ``{threads}``)."""
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def run(main: Callable[[Sequence[str] | None], Any]) -> None:
    """Run a stage's ``main`` and exit, reporting a UserError as one sentence."""
    try:
        main(None)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the image source: ``--manifest M --split S`` (prepared data) or ``--folder F`` (extra dataset)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--manifest", type=Path, help="prepared manifest.csv (with --split)")
    group.add_argument("--folder", type=Path, help="folder of images, evaluated at native size")
    parser.add_argument("--split", help="split of the manifest: train, val or test")


def dataset_name(args: argparse.Namespace) -> str:
    """The dataset of :func:`dataset_arguments`: the split, or the folder's name."""
    return args.split if args.manifest is not None else args.folder.name


def dataset_images(args: argparse.Namespace) -> list[tuple[str, Path, int]]:
    """(image id, path, label) for the images named by :func:`dataset_arguments`."""
    if args.manifest is not None:
        if not args.split:
            raise UserError("--manifest needs --split (train, val or test)")
        return split_images(args.manifest, args.split)
    root = args.folder
    records, seen = [], {}
    for path in folder_images(root):
        image_id = str(path.relative_to(root).with_suffix(""))
        if image_id in seen:
            raise UserError(f"{seen[image_id]} and {path} would both be named '{image_id}'; rename one of them")
        seen[image_id] = path
        records.append((image_id, path, -1))
    return records

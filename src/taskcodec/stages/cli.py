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

from taskcodec import io
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


def task_measure_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--task-model``, ``--features`` and ``--saliency``: machine-side measures for a prepared (labeled) split."""
    parser.add_argument("--task-model", type=Path, help="task model.pt: top-1/top-5 of every reconstruction")
    parser.add_argument("--features", type=Path, help="extract_features folder (of the same task model): "
                                                      "feature MSE of every reconstruction against its original's")
    parser.add_argument("--saliency", type=Path, help="saliency stage folder: PSNR inside/outside salient regions")


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


def final_validation(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last validation row of a training history, without its bookkeeping fields."""
    return {key: value for key, value in history[-1].items() if key not in ("split", "aux_loss", "lr")}


def finish_training(tracked: Any, history: list[dict[str, Any]], steps: int, seconds: float, checkpoint: Path,
                    metrics: dict[str, Any]) -> None:
    """After a saved ``checkpoint``: write ``metrics.json`` beside it, drop its ``resume.pt``, and log the run.

    The stage run gets the curves per split, the final validation metrics,
    ``train_log.csv`` (expected beside the checkpoint), ``metrics.json`` and
    the checkpoint's path and hash.
    """
    io.write_json(checkpoint.parent / "metrics.json", metrics)
    (checkpoint.parent / "resume.pt").unlink(missing_ok=True)
    for split in ("train", "val"):
        tracked.log_history([row for row in history if row["split"] == split], f"{split}/")
    final = final_validation(history)
    tracked.log_metrics({"steps": steps, "train_seconds": seconds,
                         **{f"final_val_{key}": value for key, value in final.items() if key != "step"}})
    tracked.log_artifact(checkpoint.parent / "train_log.csv")
    tracked.log_artifact(checkpoint.parent / "metrics.json")
    tracked.log_file_reference("checkpoint", checkpoint)

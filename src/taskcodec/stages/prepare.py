"""Stage ``prepare``: turn a dataset into fixed-size PNGs, a split and a manifest.

    python -m taskcodec.stages.prepare --params '<prepare section as JSON>' --out results/prepared

Writes, atomically (a killed job leaves no complete-looking folder)::

    <out>/images/<split>/<image_id>.png   8-bit RGB, image_size x image_size
    <out>/manifest.csv                    see taskcodec.data.manifest
    <out>/classes.json                    class names ([] when unlabeled)
    <out>/prepare.json                    the params used and the counts
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image
from tqdm import tqdm

from taskcodec.data.images import UnusableImageError, resize_center_crop
from taskcodec.data.manifest import SPLITS, assign_splits, write_manifest
from taskcodec.data.registry import UNLABELED, Dataset, Sample, build_dataset, require_int, require_param
from taskcodec.errors import UserError
from taskcodec.io import atomic_dir
from taskcodec.tracking import stage_run
from taskcodec.stages.cli import params_argument, run

_LISTED_PROBLEMS = 10  # unusable images named in the error; the rest are only counted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m taskcodec.stages.prepare",
        description="Resize, crop and split a dataset into PNGs with a manifest.",
    )
    params_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder, e.g. results/prepared")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    with stage_run("prepare", {}, args.params) as tracked:
        out = prepare(args.params, args.out)
        summary = json.loads((out / "prepare.json").read_text())
        tracked.log_metrics({"num_images": summary["num_images"],
                             **{f"images_{split}": count for split, count in summary["split_counts"].items()}})
        for name in ("manifest.csv", "prepare.json", "classes.json"):
            tracked.log_artifact(out / name)
    return out


def prepare(params: Mapping[str, Any], out: Path) -> Path:
    """Prepare the dataset described by the ``prepare`` params into ``out``; return ``out``."""
    image_size = require_int(params, "image_size", 1)
    seed = require_int(params, "seed", 0)
    fractions = require_param(params, "split")
    dataset = build_dataset(params)
    samples = list(dataset.samples())
    splits = assign_splits([sample.label for sample in samples], fractions, seed)
    with atomic_dir(out) as tmp:
        for name in SPLITS:
            (tmp / "images" / name).mkdir(parents=True)
        rows, problems = [], []
        for sample, split in tqdm(list(zip(samples, splits)), desc="prepare", unit="img", mininterval=1.0):
            try:
                rows.append(_write_image(sample, split, dataset, image_size, tmp))
            except UnusableImageError as err:
                problems.append(err)
        if problems:
            raise _summarise(problems, len(samples))
        write_manifest(tmp / "manifest.csv", rows)
        (tmp / "classes.json").write_text(json.dumps(dataset.classes, indent=2) + "\n")
        summary = {"params": dict(params), **_counts(rows, dataset.classes)}
        (tmp / "prepare.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return out


def _write_image(sample: Sample, split: str, dataset: Dataset, image_size: int, folder: Path) -> dict[str, Any]:
    """Load, resize and save one sample; return its manifest row."""
    raw = sample.load()
    square = resize_center_crop(raw, image_size, path=sample.source)
    relative = f"images/{split}/{sample.image_id}.png"
    Image.fromarray(square).save(folder / relative)
    return {
        "image_id": sample.image_id,
        "path": relative,
        "label": sample.label,
        "class_name": dataset.classes[sample.label] if sample.label != UNLABELED else "",
        "split": split,
        "source": sample.source,
        "orig_width": raw.shape[1],
        "orig_height": raw.shape[0],
    }


def _summarise(problems: list[UnusableImageError], total: int) -> UserError:
    """One UserError naming up to ``_LISTED_PROBLEMS`` unusable images and counting the rest."""
    listed = "; ".join(f"{err.path} {err.reason}" for err in problems[:_LISTED_PROBLEMS])
    more = len(problems) - _LISTED_PROBLEMS
    if more > 0:
        listed += f"; and {more} more"
    advice = " or ".join(dict.fromkeys(err.advice for err in problems))
    return UserError(f"{len(problems)} of {total} images cannot be used: {listed}; {advice}")


def _counts(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    split_counts = Counter(row["split"] for row in rows)
    class_split_counts = Counter((row["class_name"], row["split"]) for row in rows)
    return {
        "num_images": len(rows),
        "split_counts": {split: split_counts[split] for split in SPLITS},
        "class_counts": {name: {split: class_split_counts[name, split] for split in SPLITS} for name in classes},
    }


if __name__ == "__main__":
    run(main)

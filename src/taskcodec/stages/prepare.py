"""Stage ``prepare``: turn a dataset into fixed-size images, a split and a manifest.

    python -m taskcodec.stages.prepare --params '<prepare section as JSON>' --out results/prepared

Writes, atomically (a killed job or an error leaves no complete-looking folder)::

    <out>/images/<split>/<image_id>.png   8-bit RGB, image_size x image_size (prepare.storage: png, the default;
                                          with keep_train_size, the train split's at their own sizes);
    <out>/images/<split>-NNNNNN.tar       with storage: tar, the same PNGs in tar shards of images_per_shard;
                                          with storage: in_place, no images (the manifest indexes the source files)
    <out>/manifest.csv                    see taskcodec.data.manifest (a detection dataset's boxes, questions included)
    <out>/classes.json                    class names ([] when unlabeled)
    <out>/answers.json                    with questions only: the answers of the train split's questions, most
                                          frequent first (taskcodec.data.manifest.answer_vocabulary)
    <out>/skipped.csv                     images left out (source, reason); only a header unless on_bad_image: skip
    <out>/prepare.json                    the params used, the counts (num_classes, num_skipped) and skipped sources

An image that cannot be used (empty, unreadable, truncated, corrupt, too small,
over Pillow's decompression-bomb limit) stops the stage with one sentence
listing them (``on_bad_image: stop``) or is left out (``skip``). Splits are
drawn from the usable images only.

A detection dataset's boxes (the builtin dataset with ``builtin.objects``, an
image folder with ``annotations``) are mapped into the prepared square exactly as
its pixels are (:func:`~taskcodec.data.images.resize_center_crop_boxes`: scaled,
shifted by the crop, clipped to the square; a box the crop leaves less than a
pixel wide or high is dropped).

A dataset's questions (the builtin dataset with ``builtin.questions``, an image
folder with ``questions``) are stored as they are; an image folder's are about the
original image, which the centre crop may cut.

Every image is decoded and checked whatever ``prepare.storage`` (:mod:`taskcodec.data.stored`) is, so an image
indexed in place that cannot be used is found here, not by a training.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from taskcodec.artifacts import atomic_dir
from taskcodec.data.images import UnusableImageError, encode_png, resize_center_crop, resize_center_crop_boxes
from taskcodec.data.manifest import (ANSWERS_FILE, OBJECTS_COLUMN, QUESTIONS_COLUMN, SPLITS, answer_vocabulary,
                                     assign_splits, check_split_fractions, objects_json, parse_objects,
                                     parse_questions, questions_json, split_sizes, write_manifest)
from taskcodec.data.registry import UNLABELED, Dataset, Sample, build_dataset, require_int, require_param
from taskcodec.data.stored import STORAGES, Written, staged_name
from taskcodec.errors import UserError
from taskcodec.tracking import stage_run
from taskcodec.stages.cli import params_argument, run, threads_argument

_LISTED_PROBLEMS = 10  # unusable images named in the error; the rest are only counted
_CHUNK = 16  # images a worker process takes at a time
ON_BAD_IMAGE = ("skip", "stop")
SKIPPED_COLUMNS = ("source", "reason")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m taskcodec.stages.prepare",
        description="Resize, crop and split a dataset into PNG files, tar shards or an in-place index, with a "
                    "manifest.",
    )
    params_argument(parser, "prepare")
    parser.add_argument("--out", required=True, type=Path, help="output folder, e.g. results/prepared")
    threads_argument(parser, "processes that decode, check and write the images (the same output for any number)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    with stage_run("prepare", {}, args.params) as tracked:
        out = prepare(args.params, args.out, args.threads)
        summary = json.loads((out / "prepare.json").read_text())
        tracked.log_metrics({"num_images": summary["num_images"], "num_skipped": summary["num_skipped"],
                             **{f"images_{split}": count for split, count in summary["split_counts"].items()}})
        for name in ("manifest.csv", "prepare.json", "classes.json", "skipped.csv", ANSWERS_FILE):
            if (out / name).is_file():
                tracked.log_artifact(out / name)
    return out


def prepare(params: Mapping[str, Any], out: Path, processes: int = 1) -> Path:
    """Prepare the dataset described by the ``prepare`` params into ``out`` with ``processes`` working on the
    images; return ``out``."""
    image_size = require_int(params, "image_size", 1)
    seed = require_int(params, "seed", 0)
    fractions = check_split_fractions(require_param(params, "split"))
    on_bad_image = require_param(params, "on_bad_image")
    if on_bad_image not in ON_BAD_IMAGE:
        raise UserError(f"prepare.on_bad_image is {on_bad_image!r}; set it to {' or '.join(ON_BAD_IMAGE)}")
    storage = params.get("storage", "png")
    if storage not in STORAGES:
        raise UserError(f"prepare.storage is {storage!r}; set it to {', '.join(STORAGES)}")
    options = {key: require_int(params, key, 1) for key in STORAGES[storage].keys}
    own_size = params.get("keep_train_size", False)
    if not isinstance(own_size, bool):
        raise UserError(f"prepare.keep_train_size is {own_size!r}; set it to true or false")
    dataset = build_dataset(params)
    samples = list(dataset.samples())
    if STORAGES[storage].needs_files and any(sample.file is None for sample in samples):
        raise UserError(f"prepare.storage is {storage}, which keeps the image files' paths rather than the images, "
                        f"but the {params['dataset']} dataset does not read its images from files; set "
                        "prepare.storage to png or tar")
    if own_size and any(sample.objects is not None for sample in samples):
        raise UserError("prepare.keep_train_size is true, but this dataset has boxes, which are kept for the "
                        f"{image_size}² images only; set prepare.keep_train_size: false")
    split_sizes(len(samples), fractions)  # fail before decoding anything if the ratios cannot work
    with atomic_dir(out) as tmp, STORAGES[storage](tmp / "images", image_size, own_size, **options) as stored:
        usable, problems = [], []
        writing = _Writing(image_size, stored.folder, stored.encoded, own_size)
        for sample, written in zip(samples, _written(samples, writing, processes)):
            if isinstance(written, UnusableImageError):
                problems.append((sample, written))
            else:
                usable.append((sample, stored.stage(written)))
        if problems and (on_bad_image == "stop" or not usable):
            raise _summarise([err for _, err in problems], len(samples), offer_skip=bool(usable))
        _check_every_class_kept(dataset.classes, usable, problems)
        splits = assign_splits([sample.label for sample, _ in usable], fractions, seed)
        rows = [_row(stored.place(sample.image_id, sample.file, written, split), sample, written, split, dataset)
                for (sample, written), split in zip(usable, splits)]
        stored.finish()
        write_manifest(tmp / "manifest.csv", rows)
        skipped = pd.DataFrame([(err.path, err.reason) for _, err in problems], columns=list(SKIPPED_COLUMNS))
        skipped.to_csv(tmp / "skipped.csv", index=False)
        (tmp / "classes.json").write_text(json.dumps(dataset.classes, indent=2) + "\n")
        summary = {"params": dict(params), **_counts(rows, dataset.classes),
                   "num_skipped": len(problems), "skipped": [err.path for _, err in problems]}
        if rows and QUESTIONS_COLUMN in rows[0]:
            answers = answer_vocabulary(item for row in rows if row["split"] == "train"
                                        for item in parse_questions(row[QUESTIONS_COLUMN], "prepare"))
            (tmp / ANSWERS_FILE).write_text(json.dumps(answers, indent=2) + "\n")
            summary["num_answers"] = len(answers)
        (tmp / "prepare.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if problems:
        print(f"prepare: skipped {len(problems)} of {len(samples)} images that cannot be used "
              f"(prepare.on_bad_image: skip); they are listed in {out / 'skipped.csv'}", file=sys.stderr)
    return out


#: the samples forked worker processes write (:func:`_written`): inherited by the fork, never pickled (a sample's
#: callables may hold its dataset's tables)
_FORKED: list[Sample] = []


@dataclass(frozen=True)
class _Writing:
    """What the image processes do with each image: check it is at least ``image_size`` on its shorter side, resize
    and centre-crop it to ``image_size``², then save it in ``folder`` (a folder given) or hand back its PNG bytes
    (``encoded``; neither: nothing is written, an image indexed in place); with ``own_size`` both the image as it is
    and the square (the splits are not drawn yet: :meth:`~taskcodec.data.stored.Storage.place` keeps one)."""

    image_size: int
    folder: Path | None
    encoded: bool
    own_size: bool = False


def _written(samples: list[Sample], writing: _Writing, processes: int) -> Iterator[Written | UnusableImageError]:
    """:func:`_write_image` of each sample, in order, or the :class:`UnusableImageError` that stopped it;
    ``processes`` > 1 share the samples (forked, :data:`_CHUNK` at a time), each image written as one process
    would write it. A worker process that dies (e.g. killed for its memory) stops the stage with one sentence."""
    progress = functools.partial(tqdm, total=len(samples), desc="prepare", unit="img", mininterval=1.0)
    if processes <= 1:
        yield from progress(_attempt(sample, writing) for sample in samples)
        return
    global _FORKED
    _FORKED = samples
    try:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            work = functools.partial(_attempt_forked, writing=writing)
            for written in progress(pool.map(work, range(len(samples)), chunksize=_CHUNK)):
                yield UnusableImageError(*written[1:]) if written[0] == "unusable" else written[1]
    except BrokenProcessPool:
        raise UserError(f"a process of prepare died (out of memory?); raise resources.prepare.mem_mb (shared by its "
                        f"{processes} processes) or lower resources.prepare.threads") from None
    finally:
        _FORKED = []


def _attempt(sample: Sample, writing: _Writing) -> Written | UnusableImageError:
    """:func:`_write_image`, or the :class:`UnusableImageError` it raised."""
    try:
        return _write_image(sample, writing)
    except UnusableImageError as err:
        return err


def _attempt_forked(index: int, writing: _Writing) -> tuple:
    """In a worker process: ``("written", result)`` or ``("unusable", path, reason, advice)`` of ``_FORKED[index]``
    (an exception with its own constructor would not survive pickling back)."""
    written = _attempt(_FORKED[index], writing)
    if isinstance(written, UnusableImageError):
        return "unusable", written.path, written.reason, written.advice
    return "written", written


def _write_image(sample: Sample, writing: _Writing) -> Written:
    """Load and check one sample and write it as ``writing`` says. Return its original width and height, its cells
    of the optional manifest columns, when the dataset has them (its objects in the ``image_size``² image,
    :func:`~taskcodec.data.manifest.objects_json`, and questions, :func:`~taskcodec.data.manifest.questions_json`),
    and the PNG bytes of each form or None."""
    raw = sample.load()
    image_size = writing.image_size
    square = resize_center_crop(raw, image_size, path=sample.source)
    forms = [raw, square] if writing.own_size else [square]  # the forms its split may keep (Storage.form)
    png = None
    if writing.folder is not None:
        for form, image in enumerate(forms):
            Image.fromarray(image).save(writing.folder / staged_name(sample.image_id, form, writing.own_size))
    elif writing.encoded:
        png = [encode_png(image) for image in forms]
    width, height = raw.shape[1], raw.shape[0]
    cells = {}
    if sample.objects is not None:
        objects = sample.objects()
        boxes, kept = resize_center_crop_boxes(np.array([box for box, _ in objects]), width, height, image_size)
        cells[OBJECTS_COLUMN] = objects_json(boxes, [label for (_, label), keep in zip(objects, kept) if keep])
    if sample.questions is not None:
        cells[QUESTIONS_COLUMN] = questions_json(sample.questions())
    return width, height, cells, png


def _row(cell: str, sample: Sample, written: Written, split: str, dataset: Dataset) -> dict[str, Any]:
    """A placed image's manifest row."""
    return {
        "image_id": sample.image_id,
        "path": cell,
        "label": sample.label,
        "class_name": dataset.classes[sample.label] if sample.label != UNLABELED else "",
        "split": split,
        "source": sample.source,
        "orig_width": written[0],
        "orig_height": written[1],
        **written[2],
    }


def _summarise(problems: list[UnusableImageError], total: int, offer_skip: bool) -> UserError:
    """One UserError naming up to ``_LISTED_PROBLEMS`` unusable images and counting the rest."""
    listed = "; ".join(f"{err.path} {err.reason}" for err in problems[:_LISTED_PROBLEMS])
    more = len(problems) - _LISTED_PROBLEMS
    if more > 0:
        listed += f"; and {more} more"
    advice = " or ".join(dict.fromkeys(err.advice for err in problems))
    if offer_skip:
        advice += ", or set prepare.on_bad_image: skip to leave them out"
    return UserError(f"{len(problems)} of {total} images cannot be used: {listed}; {advice}")


def _check_every_class_kept(classes: list[str], usable: list, problems: list) -> None:
    """A class whose images were all skipped would be a label without data: a UserError naming it."""
    kept = {sample.label for sample, _ in usable}
    for label in sorted({sample.label for sample, _ in problems} - kept - {UNLABELED}):
        first = next(err for sample, err in problems if sample.label == label)
        raise UserError(
            f"none of the images of class '{classes[label]}' can be used (e.g. {first.path} {first.reason}); "
            "replace them or remove the class folder"
        )


def _counts(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    split_counts = Counter(row["split"] for row in rows)
    class_split_counts = Counter((row["class_name"], row["split"]) for row in rows)
    extra = {}
    if rows and OBJECTS_COLUMN in rows[0]:  # a detection dataset: objects of each class per split
        labels = Counter((label, row["split"]) for row in rows
                         for label in parse_objects(row[OBJECTS_COLUMN], "prepare")["labels"])
        extra["object_counts"] = {name: {split: labels[k, split] for split in SPLITS}
                                  for k, name in enumerate(classes)}
    if rows and QUESTIONS_COLUMN in rows[0]:  # a dataset with questions: questions per split
        asked: Counter[str] = Counter()
        for row in rows:
            asked[row["split"]] += len(parse_questions(row[QUESTIONS_COLUMN], "prepare"))
        extra["question_counts"] = {split: asked[split] for split in SPLITS}
    return {
        "num_images": len(rows),
        "num_classes": len(classes),
        "split_counts": {split: split_counts[split] for split in SPLITS},
        "class_counts": {name: {split: class_split_counts[name, split] for split in SPLITS} for name in classes},
        **extra,
    }


if __name__ == "__main__":
    run(main)

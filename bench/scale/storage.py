"""Prepared data stored three ways (issue 17): for ``prepare.storage`` png, tar and in_place, what ``prepare`` costs
and leaves on disk, and how fast a training reads the images back; and ``prepare`` with one and with two processes.

``python bench/scale/storage.py [--out bench/results/storage] [--images-per-shard 100]``

The photos of ``../shared/data/photos`` (about 1 MP each; :func:`plan.linked_photos`, each under 10 names) are
prepared at 256² by the stage run as the pipeline runs it (:func:`measure.stage`, wall seconds). Counted: the files
and bytes of the prepared folder (its manifest and the other small files included; in place, the photos
themselves are not). Then, in this process, every image of the training split is read with
:func:`taskcodec.data.stored.read_image` in a shuffled order, as a training draws them: images/s on one thread,
right after ``prepare`` (the files are in the page cache; a network filesystem adds its latency per read, for a
PNG file and for a shard's member alike, and its per-file costs per PNG file only). The pixels read back are
compared with the PNG storage's: they must be identical. Writes ``bench/results-summary/storage.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from measure import stage  # bench/scale/measure.py
from plan import REPEATS, ROOT, SIZE, linked_photos, photo_params  # bench/scale/plan.py

SUMMARY = ROOT / "bench/results-summary/storage.json"
#: (prepare.storage, prepare's processes) of each run, side by side
RUNS = [("png", 1), ("png", 2), ("tar", 1), ("in_place", 1)]


def prepared(out: Path, photos: Path, storage: str, processes: int, per_shard: int) -> tuple[Path, dict]:
    """``prepare`` of ``photos`` with ``storage`` and ``processes``: its manifest, and its images/s, files and bytes
    per image."""
    folder = out / f"{storage}-{processes}"
    shutil.rmtree(folder, ignore_errors=True)
    params = {**photo_params(photos), "storage": storage, **({"images_per_shard": per_shard} if storage == "tar"
                                                             else {})}
    seconds, _ = stage("prepare", "--params", json.dumps(params), "--threads", str(processes), "--out", str(folder),
                       log=out / f"{storage}-{processes}.log")
    images = json.loads((folder / "prepare.json").read_text())["num_images"]
    files = [path for path in folder.rglob("*") if path.is_file()]
    return folder / "manifest.csv", {"storage": storage, "processes": processes,
                                     "prepare_images_per_s": images / seconds, "files": len(files),
                                     "bytes_per_image": sum(path.stat().st_size for path in files) / images}


def read_rate(manifest: Path) -> tuple[float, dict[str, np.ndarray]]:
    """Images/s of reading the training split in a shuffled order (seeded), and the images by id."""
    from taskcodec.data.manifest import split_images
    from taskcodec.data.stored import read_image

    records = split_images(manifest, "train")
    random.Random(0).shuffle(records)
    started = time.perf_counter()
    images = {image_id: read_image(image) for image_id, image, _ in records}
    return len(records) / (time.perf_counter() - started), images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/storage")
    parser.add_argument("--images-per-shard", type=int, default=100)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    photos = linked_photos(args.out)
    rows, reference = [], None
    for storage, processes in RUNS:
        manifest, row = prepared(args.out, photos, storage, processes, args.images_per_shard)
        row["read_images_per_s"], images = read_rate(manifest)
        if reference is None:
            reference = images
        row["identical_to_png"] = images.keys() == reference.keys() and all(
            np.array_equal(images[key], reference[key]) for key in reference)
        rows.append(row)
        print(json.dumps(row), flush=True)
    sizes = pd.read_csv(args.out / "png-1" / "manifest.csv")
    SUMMARY.write_text(json.dumps({"image_size": SIZE, "photos": len(list(photos.iterdir())) // REPEATS,
                                   "megapixels": float((sizes["orig_width"] * sizes["orig_height"]).mean() / 1e6),
                                   "repeats": REPEATS, "images_per_shard": args.images_per_shard,
                                   "train_images": len(reference), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

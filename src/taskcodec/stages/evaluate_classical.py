"""Stage: run a classical codec over a quality sweep on the evaluation images.

``python -m taskcodec.stages.evaluate_classical --params '{"qualities": [...], "save_reconstructions": 4}'
--codec jpeg (--manifest manifest.csv --split test | --folder DIR) --out results/eval/classical/jpeg/<dataset>``

bpp counts the whole encoded file (headers included); with ``niqe`` the no-reference
NIQE of every reconstruction is measured too (:mod:`taskcodec.niqe`). Images are loaded in
chunks of at most ``CHUNK_IMAGES`` images (and ``CHUNK_PIXELS`` pixels), and
each chunk is coded at each quality with one ``encode_many``/``decode_many``
call, so codecs that run an external tool start it once per chunk and
quality rather than once per image. A codec whose tool is not
installed writes an empty ``per_image.csv`` and a ``summary.json`` with
``status: skipped`` and the reason, so the run reports what it skipped and why.
With ``--saliency`` (prepared splits) every reconstruction's PSNR is also split into
salient and background regions. With ``--task-model`` (one per task) and ``--features``
every reconstruction is also given to each frozen task model and its feature maps are
compared with the original's cached ones: ``task/<task>/`` holds the same files with
that task's columns, its ``summary.json`` the task's metrics over all images of each
quality (``task_metrics``, e.g. detection's mAP), which the rate–accuracy report uses.
The task models' targets come from the manifest row of each image (label, objects).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from taskcodec import artifacts
from taskcodec.baselines.registry import get_classical
from taskcodec.data.manifest import split_rows
from taskcodec.data.stored import StoredImage
from taskcodec.device import resolve_device
from taskcodec.evaluation import (EVALUATE_KEYS, SalientRegions, TaskMeasures, load_original, measure, row_fields,
                                  save_reconstruction, task_measures, write_task_results)
from taskcodec.params import check_section
from taskcodec.stages.cli import (dataset_arguments, dataset_images, dataset_name, params_argument, run,
                                  task_measure_arguments, run_arguments)
from taskcodec.tracking import stage_run

CHUNK_IMAGES = 256
"""Most images loaded and coded together."""
CHUNK_PIXELS = 1 << 24
"""Most pixels loaded and coded together (48 MiB of RGB), bounding memory for folders of large images."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.evaluate_classical", description=__doc__.splitlines()[0])
    params_argument(parser, None)
    run_arguments(parser)
    parser.add_argument("--codec", required=True)
    dataset_arguments(parser)
    task_measure_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def image_chunks(records: list[tuple[str, StoredImage | Path, int]]
                 ) -> Iterator[list[tuple[int, str, np.ndarray]]]:
    """(position, image id, RGB image) of every record, in order, grouped into chunks.

    A chunk holds at most :data:`CHUNK_IMAGES` images and, unless it is a
    single image, at most :data:`CHUNK_PIXELS` pixels.
    """
    chunk: list[tuple[int, str, np.ndarray]] = []
    pixels = 0
    for position, (image_id, path, _) in enumerate(records):
        image = load_original(path)
        size = image.shape[0] * image.shape[1]
        if chunk and (len(chunk) == CHUNK_IMAGES or pixels + size > CHUNK_PIXELS):
            yield chunk
            chunk, pixels = [], 0
        chunk.append((position, image_id, image))
        pixels += size
    if chunk:
        yield chunk


def measure_sweep(codec, records, params: dict, recon_dir: Path, run_id: str, name: str, regions: SalientRegions,
                  tasks: list[TaskMeasures], samples: dict[str, dict]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Per-image rows for every quality of the sweep, ordered by image then quality, and each task's rows in the
    same order; ``samples`` holds each image's task fields (its label, its objects...)."""
    rows, task_rows = [], {task.name: [] for task in tasks}
    qualities = params["qualities"]
    with tqdm(total=len(records) * len(qualities), desc=name, unit="codings", mininterval=5.0) as progress:
        for chunk in image_chunks(records):
            originals = [image for _, _, image in chunk]
            chunk_rows: list[list[dict]] = [[] for _ in chunk]  # per image, in quality order
            chunk_task_rows = {task.name: [[] for _ in chunk] for task in tasks}
            for quality in qualities:
                encoded = codec.encode_many(originals, quality)
                reconstructions = codec.decode_many(encoded)
                for index, ((position, image_id, original), data, reconstruction, image_rows) in enumerate(zip(
                    chunk, encoded, reconstructions, chunk_rows, strict=True
                )):
                    for task in tasks:
                        chunk_task_rows[task.name][index].append(
                            task.measure(image_id, samples[image_id], original, reconstruction, quality))
                    image_rows.append({**regions.measure(image_id, original, reconstruction),
                                       "kind": "classical", "codec": name, "point": quality, "image_id": image_id,
                                       "bpp_estimated": float("nan"), "run_id": run_id,
                                       **measure(original, reconstruction, len(data), niqe=params["niqe"])})
                    if position < params["save_reconstructions"]:
                        save_reconstruction(recon_dir, f"{image_id}_q{quality}", reconstruction)
                progress.update(len(chunk))
            rows.extend(row for image_rows in chunk_rows for row in image_rows)
            for task in tasks:
                task_rows[task.name].extend(row for image_rows in chunk_task_rows[task.name] for row in image_rows)
    return rows, task_rows


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    codec = get_classical(args.codec)
    # --params is the codec's sweep plus the evaluation keys both evaluation stages read
    shared = {key: params[key] for key in EVALUATE_KEYS if key in params}
    check_section("evaluate", shared, keys=EVALUATE_KEYS)
    check_section(f"evaluate.classical.{args.codec}", {k: v for k, v in params.items() if k not in EVALUATE_KEYS})
    torch.set_num_threads(args.threads)
    records = dataset_images(args)
    wildcards = {"codec": args.codec, "dataset": dataset_name(args)}
    with stage_run("evaluate_classical", wildcards, params) as tracked, artifacts.atomic_dir(args.out) as tmp:
        reason = codec.unavailable_reason()
        tasks = task_measures(args.task_model, args.features, dataset_name(args), resolve_device(args.device))
        regions = SalientRegions(args.saliency, params["saliency_threshold"])
        rows, task_rows = [], {task.name: [] for task in tasks}
        if reason is None:
            samples = ({row["image_id"]: row for row in split_rows(args.manifest, args.split)} if args.manifest
                       else {image_id: {"label": label} for image_id, _, label in records})
            rows, task_rows = measure_sweep(codec, records, params, tmp / "recon", tracked.run_id, args.codec,
                                            regions, tasks, samples)
        else:
            print(f"skipping {args.codec}: {reason}")
        table = pd.DataFrame(rows, columns=row_fields(regions))
        table.to_csv(tmp / "per_image.csv", index=False)
        status = "ok" if reason is None else "skipped"
        summary = {"status": status, "reason": reason, "codec": args.codec, "quality_knob": codec.quality_knob,
                   "images": len(records), "params": params, "run_id": tracked.run_id}
        artifacts.write_json(tmp / "summary.json", summary)
        tracked.set_tags({"status": status, "skip_reason": reason or ""})
        logged = {quality: values.to_dict() for quality, values
                  in table.groupby("point")[["bpp", "psnr", "ms_ssim", "niqe", *regions.columns]].mean().iterrows()}
        for task in tasks:  # with the task's metrics over each quality's images
            for quality, values in write_task_results(tmp, table, summary, task, task_rows[task.name],
                                                      one_point=False).items():
                logged[quality].update(values)
        for quality, values in logged.items():
            tracked.log_metrics({name: value for name, value in values.items() if value == value}, step=int(quality))
        tracked.log_artifact(tmp / "per_image.csv")
    return args.out


if __name__ == "__main__":
    run(main)

"""Stage: measure a learned codec from its cached bitstreams.

``python -m taskcodec.stages.evaluate_codec --params '{"device": "auto", "save_reconstructions": 4}'
--model model.pt --cache results/cache/<codec>/<dataset> --codec-id <codec> --out results/eval/learned/<codec>/<dataset>``

Every bitstream of the cache is read back from disk and decompressed (the layers
the codec's image receiver needs); bpp is counted from their bytes (per layer too,
for codecs with several layers), PSNR and MS-SSIM on the 8-bit reconstruction against
the original image. Writes ``per_image.csv``, ``summary.json`` and the first
``save_reconstructions`` reconstructions under ``recon/``. With ``--task-model``,
``--features`` and ``--saliency`` (prepared splits) the rows also hold the task
model's prediction on the reconstruction, the MSE of its feature maps against the
original's cached ones, and PSNR inside/outside the salient region.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from taskcodec import artifacts
from taskcodec.codecs.cache import cached_images
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.codecs.coding import decode_images
from taskcodec.data.tensors import to_uint8
from taskcodec.device import resolve_device
from taskcodec.evaluation import EVALUATE_KEYS, TaskMeasures, load_original, measure, read_table, row_fields, save_reconstruction
from taskcodec.stages.cli import params_argument, run, task_measure_arguments, run_arguments
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.evaluate_codec", description=__doc__.splitlines()[0])
    params_argument(parser, "evaluate", keys=EVALUATE_KEYS)
    run_arguments(parser)
    parser.add_argument("--rule", default="evaluate_codec", help="rule name for the MLflow run (Snakemake passes its own)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--codec-id", required=True, help="name of this codec point in tables")
    task_measure_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, meta = load_codec(args.model, device)
    features = args.features / f"{args.cache.name}.pt" if args.features else None
    task = TaskMeasures(args.task_model, args.saliency, params["saliency_threshold"], device, features)
    index = read_table(args.cache / "index.csv").set_index("image_id")
    # the first images in dataset order, as the classical evaluation saves them, so the report can pair them
    saved = set(index.sort_values("position").index[: params["save_reconstructions"]])
    kind = "finetuned" if "tau" in meta["params"] else "pretrained"
    image_layers = model.layers_for("image")
    layer_columns = [column for layer in model.layers for column in (f"bytes_{layer}", f"bpp_{layer}")
                     if len(model.layers) > 1]
    wildcards = {"codec": args.codec_id, "lmbda": meta["lmbda"], "dataset": args.cache.name}
    with stage_run(args.rule, wildcards, params, inputs={"model": args.model}) as tracked, \
            artifacts.atomic_dir(args.out) as tmp:
        rows = []
        for image_id, layered, n_bytes in cached_images(args.cache, args.model, index, image_layers):
            reconstruction = to_uint8(decode_images(model, [layered]).x_hat)[0]
            original = load_original(index.loc[image_id, "path"])
            rows.append({**task.measure(image_id, {"label": int(index.loc[image_id, "label"])}, original, reconstruction),
                         "position": index.loc[image_id, "position"], "kind": kind,
                         "codec": args.codec_id, "point": meta["lmbda"], "image_id": image_id,
                         "bpp_estimated": index.loc[image_id, "bpp_estimated"], "run_id": tracked.run_id,
                         **{column: index.loc[image_id, column] for column in layer_columns},
                         **measure(original, reconstruction, n_bytes)})
            if image_id in saved:
                save_reconstruction(tmp / "recon", image_id, reconstruction)
        table = pd.DataFrame(sorted(rows, key=lambda row: row["position"]), columns=row_fields(task) + layer_columns)
        table.to_csv(tmp / "per_image.csv", index=False)
        means = {key: float(table[key].mean()) for key in ("bpp", "bpp_estimated", "psnr", "ms_ssim", *task.metrics,
                                                           *layer_columns)}
        artifacts.write_json(tmp / "summary.json", {"status": "ok", "kind": kind, "codec": args.codec_id,
                                                    "point": meta["lmbda"], "images": len(table), **means,
                                                    "params": params, "run_id": tracked.run_id})
        tracked.log_metrics({key: value for key, value in means.items() if value == value})  # NaN: not measured
        tracked.log_artifact(tmp / "per_image.csv")
    return args.out


if __name__ == "__main__":
    run(main)

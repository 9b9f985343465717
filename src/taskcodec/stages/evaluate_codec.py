"""Stage: measure a learned codec from its cached bitstreams.

``python -m taskcodec.stages.evaluate_codec --params '{"device": "auto", "save_reconstructions": 4}'
--model model.pt --cache results/cache/<codec>/<dataset> --codec-id <codec> [--point <value>]
--out results/eval/learned/<codec>/<dataset>``

Every bitstream of the cache is read back from disk and decompressed (the layers
the codec's image receiver needs); bpp is counted from their bytes (per layer too,
for codecs with several layers), PSNR and MS-SSIM on the 8-bit reconstruction against
the original image. Writes ``per_image.csv``, ``summary.json`` and the first
``save_reconstructions`` reconstructions under ``recon/``. With ``--saliency`` (prepared
splits) the rows also hold PSNR inside/outside the salient region. With
``--task-model`` (one or more, one per task) and ``--features``, ``task/<task>/``
holds the same files with each row's task columns added: the task model's prediction
on the reconstruction and its scores against the sample's task fields in the cache's
index (label, objects) and the MSE of its feature maps against the original's cached
ones; its ``summary.json`` holds the task's metrics over the whole split
(``task_metrics``; detection's mAP is not a mean of per-image values).

A codec that carries a task model (``needs_task_model``, e.g. the scalable codec's
base layer) is measured for that task as its task receiver sees it: only the layers
of ``layers_for("task")`` are decoded, without pixels, the codec's ``task_outputs``
gives the task model's outputs, and ``bytes_task`` / ``bpp_task`` count those layers'
bytes (the rate of the rate–accuracy report). PSNR, MS-SSIM, feature distortion and
``bpp`` stay those of the image receiver. The workflow names a scalable codec's curve by
its λ and places it by ``--point`` λ_task, the weight that sets the base layer's rate. A variable-rate codec
(seed 001) is measured at ``--point-index`` k, its curve's k-th point, placed by that point's λ.
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
from taskcodec.codecs.registry import needs_task_model
from taskcodec.data.tensors import to_uint8
from taskcodec.device import resolve_device
from taskcodec.evaluation import (EVALUATE_KEYS, SalientRegions, load_original, measure, read_table, row_fields,
                                  save_reconstruction, task_measures, write_task_results)
from taskcodec.stages.cli import params_argument, run, task_measure_arguments, run_arguments
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.evaluate_codec", description=__doc__.splitlines()[0])
    params_argument(parser, "evaluate", keys=EVALUATE_KEYS)
    run_arguments(parser)
    parser.add_argument("--rule", default="evaluate_codec", help="rule name for the MLflow run (Snakemake passes its own)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--point-index", type=int,
                        help="a variable-rate codec's operating point (0 = its lowest rate)")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--codec-id", required=True, help="name of this codec's curve in tables")
    parser.add_argument("--point", type=float,
                        help="where this codec sits on its curve (default: its λ; a scalable codec's λ_task)")
    task_measure_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, meta = load_codec(args.model, device, point=args.point_index)
    tasks = task_measures(args.task_model, args.features, args.cache.name, device)
    regions = SalientRegions(args.saliency, params["saliency_threshold"])
    index = read_table(args.cache / "index.csv").set_index("image_id")
    # the first images in dataset order, as the classical evaluation saves them, so the report can pair them
    saved = set(index.sort_values("position").index[: params["save_reconstructions"]])
    kind = ("scalable" if needs_task_model(meta["arch"]) else "variable-rate" if model.operating_points > 1
            else "finetuned" if "tau" in meta["params"] else "pretrained")
    image_layers = model.layers_for("image")
    # the task receiver of a codec carrying a task model: its layers alone give that task's outputs
    carried = meta["task_model"]["task"] if needs_task_model(meta["arch"]) else None
    task_layers = model.layers_for("task") if carried in [task.name for task in tasks] else ()
    layer_columns = [column for layer in model.layers for column in (f"bytes_{layer}", f"bpp_{layer}")
                     if len(model.layers) > 1]
    rate_columns = layer_columns + (["bytes_task", "bpp_task"] if task_layers else [])
    point = meta["lmbda"] if args.point is None else args.point
    if args.point is None and args.point_index is not None:  # a variable-rate codec: the point's own λ
        point = meta["lmbda"][args.point_index]
    wildcards = {"codec": args.codec_id, "lmbda": meta["lmbda"], "point": point, "dataset": args.cache.name}
    with stage_run(args.rule, wildcards, params, inputs={"model": args.model}) as tracked, \
            artifacts.atomic_dir(args.out) as tmp:
        rows, task_rows = [], {task.name: [] for task in tasks}
        decoded_layers = tuple(layer for layer in model.layers if layer in image_layers + task_layers)
        for image_id, layered, sizes in cached_images(args.cache, args.model, index, decoded_layers):
            image_bitstream = {layer: layered[layer] for layer in image_layers}
            reconstruction = to_uint8(decode_images(model, [image_bitstream]).x_hat)[0]
            original = load_original(index.loc[image_id, "path"])
            sample = {**index.loc[image_id].to_dict(), "image_id": image_id}
            outputs, rates = None, {column: index.loc[image_id, column] for column in layer_columns}
            if task_layers:
                latents = decode_images(model, [{layer: layered[layer] for layer in task_layers}], pixels=False).latents
                outputs = model.task_outputs(latents)
                task_bytes = sum(sizes[layer] for layer in task_layers)
                rates.update(bytes_task=task_bytes, bpp_task=8 * task_bytes / (original.shape[0] * original.shape[1]))
            for task in tasks:
                task_rows[task.name].append(task.measure(image_id, sample, original, reconstruction, point,
                                                         outputs if task.name == carried else None))
            rows.append({**regions.measure(image_id, original, reconstruction),
                         "position": index.loc[image_id, "position"], "kind": kind,
                         "codec": args.codec_id, "point": point, "image_id": image_id,
                         "bpp_estimated": index.loc[image_id, "bpp_estimated"], "run_id": tracked.run_id, **rates,
                         **measure(original, reconstruction, sum(sizes[layer] for layer in image_layers), niqe=params["niqe"])})
            if image_id in saved:
                save_reconstruction(tmp / "recon", image_id, reconstruction)
        order = sorted(range(len(rows)), key=lambda i: rows[i]["position"])
        table = pd.DataFrame([rows[i] for i in order], columns=row_fields(regions) + rate_columns)
        table.to_csv(tmp / "per_image.csv", index=False)
        means = {key: float(table[key].mean()) for key in ("bpp", "bpp_estimated", "psnr", "ms_ssim", "niqe",
                                                           *regions.columns, *rate_columns)}
        summary = {"status": "ok", "kind": kind, "codec": args.codec_id, "point": point, "images": len(table),
                   **means, "params": params, "run_id": tracked.run_id}
        artifacts.write_json(tmp / "summary.json", summary)
        for task in tasks:
            means.update(write_task_results(tmp, table, summary, task, [task_rows[task.name][i] for i in order],
                                            one_point=True)[point])
        tracked.log_metrics({key: value for key, value in means.items() if value == value})  # NaN: not measured
        tracked.log_artifact(tmp / "per_image.csv")
    return args.out


if __name__ == "__main__":
    run(main)

"""Stage: entropy-code a dataset with a trained codec and cache bitstreams and latents.

``python -m taskcodec.stages.cache_latents --params '<cache as JSON>' --model model.pt
(--manifest manifest.csv --split train | --folder DIR) --out results/cache/<codec>/<dataset>``

The output folder (written atomically) holds:

- ``shard-NNNNN.tcbs``: the real rANS bitstreams, one record per image and layer
  (see :mod:`taskcodec.codecs.bitstream`);
- ``shard-NNNNN.pt``: latents ŷ, scales σ̂ per layer and labels, decoded from those bitstreams
  (omitted with ``--no-latents``, or for architectures that decode pixels only);
- ``index.csv``: one row per image with its label, actual bpp (from the bytes) and estimated bpp
  (from the likelihoods); for codecs with several layers also ``bytes_<layer>``, ``bpp_<layer>``
  and the cumulative ``bpp_upto_<layer>`` in coding order; for a prepared split also the
  manifest's columns beyond :data:`~taskcodec.data.manifest.MANIFEST_COLUMNS` (a detection
  dataset's ``objects``), the task fields ``evaluate_codec`` hands the task model's targets;
- ``cache.json``: totals and the decode check: the stored bitstreams of the first
  ``decode_check`` images are read back from disk, decompressed, and compared with the
  model's forward reconstruction.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from taskcodec import artifacts
from taskcodec.codecs.bitstream import ImageBitstream, ShardWriter
from taskcodec.codecs.cache import read_bitstreams
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.codecs.coding import decode_images, encode_images, estimated_bits, pad
from taskcodec.data.manifest import MANIFEST_COLUMNS, read_manifest
from taskcodec.data.stored import StoredImage, read_image
from taskcodec.data.tensors import to_float, to_uint8
from taskcodec.device import resolve_device
from taskcodec.errors import UserError
from taskcodec.stages.cli import dataset_arguments, dataset_images, dataset_name, params_argument, run, run_arguments
from taskcodec.tracking import stage_run

BATCH_SIZE = 32
#: largest allowed |decoded − forward| reconstruction difference in the decode check (float, [0, 1] scale)
DECODE_TOLERANCE = 1e-3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.cache_latents", description=__doc__.splitlines()[0])
    params_argument(parser, "cache", omit=["splits"])
    run_arguments(parser)
    parser.add_argument("--rule", default="cache_latents", help="rule name for the MLflow run (Snakemake passes its own)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--point-index", type=int,
                        help="a variable-rate codec's operating point (0 = its lowest rate)")
    dataset_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-latents", dest="latents", action="store_false", help="store bitstreams only")
    return parser


def _batches(records: list[tuple[str, StoredImage | Path, int]], shard_size: int):
    """Yield (shard number, batches of same-sized (position, id, path, label, image)); one shard in memory at a time."""
    for shard, start in enumerate(range(0, len(records), shard_size)):
        by_size: dict[tuple[int, ...], list] = defaultdict(list)
        for position, (image_id, path, label) in enumerate(records[start : start + shard_size], start):
            image = read_image(path)
            by_size[image.shape].append((position, image_id, path, label, image))
        yield shard, [group[i : i + BATCH_SIZE] for group in by_size.values() for i in range(0, len(group), BATCH_SIZE)]


def _rate_columns(layered: dict, estimated: dict[str, float], pixels: int, layers: tuple[str, ...]) -> dict:
    """bytes, bpp (from the bytes) and estimated bpp of one image; per layer and cumulative when there are several."""
    sizes = {layer: len(layered[layer]) for layer in layers}
    row = {"bytes": sum(sizes.values()), "bpp": 8 * sum(sizes.values()) / pixels,
           "bpp_estimated": sum(estimated.values()) / pixels}
    if len(layers) > 1:
        total = 0
        for layer in layers:
            total += sizes[layer]
            row.update({f"bytes_{layer}": sizes[layer], f"bpp_{layer}": 8 * sizes[layer] / pixels,
                        f"bpp_upto_{layer}": 8 * total / pixels})
    return row


def _cache_shard(model, batches, writer: ShardWriter, shard: int, keep_latents: bool, device) -> tuple[list[dict], dict]:
    """Code one shard's batches into ``writer``; return its index rows and (if kept) its decoded latents."""
    rows, latents = [], {"image_ids": [], "labels": [], "layers": {}}
    layered = len(model.layers) > 1
    for batch in batches:
        x = to_float(torch.from_numpy(np.stack([item[4] for item in batch])).permute(0, 3, 1, 2), device)
        payloads = [{layer: bitstream.to_bytes() for layer, bitstream in encoded.items()}
                    for encoded in encode_images(model, x)]
        bits = {layer: value.tolist() for layer, value in estimated_bits(model, x).items()}
        for i, ((position, image_id, path, label, image), payload) in enumerate(zip(batch, payloads)):
            for layer in model.layers:
                writer.write(image_id, payload[layer], layer if layered else None)
            pixels = image.shape[0] * image.shape[1]
            rows.append({"position": position, "image_id": image_id, "path": str(path), "label": label,
                         "height": image.shape[0], "width": image.shape[1],
                         **_rate_columns(payload, {layer: bits[layer][i] for layer in bits}, pixels, model.layers),
                         "shard": shard})
        if not keep_latents:
            continue
        # latents come from the serialized bytes, exactly as a receiver would decode them
        decoded = decode_images(model, [{layer: ImageBitstream.from_bytes(data) for layer, data in payload.items()}
                                        for payload in payloads], pixels=False)
        if decoded.latents is None:
            continue
        for layer, decoded_layer in decoded.latents.items():
            stored = latents["layers"].setdefault(layer, {"y_hat": [], "scales_hat": []})
            if stored["y_hat"] and stored["y_hat"][0].shape[1:] != decoded_layer.y_hat.shape[1:]:
                raise UserError(f"{writer.path.parent}: cached latents need images of one size; use --no-latents")
            stored["y_hat"].append(decoded_layer.y_hat.cpu())
            stored["scales_hat"].append(None if decoded_layer.scales_hat is None else decoded_layer.scales_hat.cpu())
        latents["image_ids"] += [item[1] for item in batch]
        latents["labels"].append(torch.tensor([item[3] for item in batch]))
    if not latents["image_ids"]:
        return rows, {}
    return rows, {"image_ids": latents["image_ids"], "labels": torch.cat(latents["labels"]),
                  "layers": {layer: {key: None if None in parts else torch.cat(parts) for key, parts in stored.items()}
                             for layer, stored in latents["layers"].items()}}


def strings_per_layer(cache_dir: Path, layers: tuple[str, ...]) -> dict[str, int]:
    """How many entropy-coded strings the codec writes per layer (read from the first cached image)."""
    _, parts = next(read_bitstreams(cache_dir, layers))
    return {layer: len(ImageBitstream.from_bytes(data).strings) for layer, data in parts.items()}


def _decode_check(model, out_dir: Path, rows: list[dict], count: int, device) -> dict:
    """Decompress stored bitstreams from disk and compare with the forward reconstruction."""
    rows = sorted(rows, key=lambda row: row["position"])
    wanted = {row["image_id"]: row for row in (rows if count < 0 else rows[:count])}
    max_diff, max_levels, checked = 0.0, 0, 0
    for image_id, parts in read_bitstreams(out_dir, model.layers):
        if image_id not in wanted:
            continue
        layered = {layer: ImageBitstream.from_bytes(parts[layer], where=f"{out_dir}:{image_id}:{layer}")
                   for layer in model.layers_for("image")}
        decoded = decode_images(model, [layered]).x_hat
        x = to_float(torch.from_numpy(read_image(wanted[image_id]["path"])).permute(2, 0, 1)[None], device)
        with torch.no_grad():
            forward = model(pad(x, model.pad_multiple))["x_hat"][..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
        max_diff = max(max_diff, (decoded - forward).abs().max().item())
        levels = np.abs(to_uint8(decoded).astype(int) - to_uint8(forward).astype(int)).max()
        max_levels = max(max_levels, int(levels))
        checked += 1
    if max_diff > DECODE_TOLERANCE:
        raise RuntimeError(
            f"decode check failed in {out_dir}: decompressed reconstructions differ from the forward pass "
            f"by up to {max_diff:.3g} (tolerance {DECODE_TOLERANCE}); the entropy coder tables are out of date"
        )
    return {"images": checked, "max_abs_diff": max_diff, "max_8bit_level_diff": max_levels}


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, meta = load_codec(args.model, device, point=args.point_index)
    records = dataset_images(args)
    wildcards = {"arch": meta["arch"], **meta["hyper"], "lmbda": meta["lmbda"], "dataset": dataset_name(args)}
    if "tau" in meta["params"]:  # a task-fine-tuned codec (finetune_codec)
        wildcards["tau"] = meta["params"]["tau"]
    with stage_run(args.rule, wildcards, params, inputs={"model": args.model}) as tracked:
        tracked.set_tags({"device": device})
        rows: list[dict] = []
        with artifacts.atomic_dir(args.out) as tmp:
            latents_written = False
            for shard, batches in _batches(records, params["shard_size"]):
                with ShardWriter(tmp / f"shard-{shard:05d}.tcbs", layered=len(model.layers) > 1) as writer:
                    shard_rows, latents = _cache_shard(model, batches, writer, shard, args.latents, device)
                rows += shard_rows
                if latents:
                    artifacts.save_checkpoint(tmp / f"shard-{shard:05d}.pt", latents)
                    latents_written = True
            if not rows:
                raise UserError(f"no images to cache for {args.out}")
            check = _decode_check(model, tmp, rows, params["decode_check"], device)
            index = pd.DataFrame(rows).sort_values("position").assign(run_id=tracked.run_id)
            if args.manifest is not None:
                manifest = read_manifest(args.manifest).set_index("image_id")
                index = index.join(manifest.drop(columns=list(MANIFEST_COLUMNS[1:])), on="image_id")
            index.to_csv(tmp / "index.csv", index=False)
            totals = {"images": len(index), "bpp_mean": float(index["bpp"].mean()),
                      "bpp_estimated_mean": float(index["bpp_estimated"].mean())}
            artifacts.write_json(tmp / "cache.json", {
                "model": str(args.model), "model_sha256": artifacts.file_digest(args.model), "codec": meta["codec_id"],
                "arch": meta["arch"], "hyper": meta["hyper"], "lmbda": meta["lmbda"], "layers": list(model.layers),
                "task_layer": model.task_layer(), "strings": strings_per_layer(tmp, model.layers), **totals,
                "latents": latents_written, "point_index": args.point_index,
                "decode_check": check, "params": params, "run_id": tracked.run_id,
            })
        tracked.log_metrics({**totals, "decode_check_max_abs_diff": check["max_abs_diff"]})
        tracked.log_artifact(args.out / "cache.json")
    return args.out


if __name__ == "__main__":
    run(main)

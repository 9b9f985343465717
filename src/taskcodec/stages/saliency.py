"""Stage: a saliency map for every prepared image (spectral residual, Hou & Zhang, CVPR 2007).

``python -m taskcodec.stages.saliency --params '<saliency section as JSON>'
--manifest results/prepared/manifest.csv --out results/saliency``

Writes, atomically (a killed job leaves no complete-looking folder)::

    <out>/maps/<image_id>.png   8-bit grayscale map, the image's size (255 = most salient)
    <out>/index.csv             image_id, split, label, map path, mean saliency
    <out>/saliency.pt           all maps as a uint8 tensor N×1×H×W in manifest order, with their ids
                                (what training loads, see taskcodec.saliency.load_maps); without a train
                                split that keeps its images' own sizes (prepare.keep_train_size)
    <out>/grid.png              the first ``grid_images`` test images above their maps
    <out>/saliency.json         the params, counts and seconds per image
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from taskcodec import artifacts
from taskcodec.data.manifest import manifest_images, own_sizes, read_manifest
from taskcodec.data.stored import read_image
from taskcodec.errors import UserError
from taskcodec.report.grid import saliency_grid
from taskcodec.saliency import MAPS_FILE, saliency_map, save_maps, to_uint8
from taskcodec.stages.cli import params_argument, run
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.saliency", description=__doc__.splitlines()[0])
    params_argument(parser, "saliency")
    parser.add_argument("--manifest", type=Path, required=True, help="prepared manifest.csv")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. results/saliency")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    shown_count = params["grid_images"]
    if isinstance(shown_count, bool) or not isinstance(shown_count, int) or shown_count < 1:
        raise UserError(f"saliency.grid_images is {shown_count!r}; set it to an integer >= 1")
    manifest = read_manifest(args.manifest)
    images = manifest_images(args.manifest)
    own_size = own_sizes(args.manifest, "train") is not None
    with stage_run("saliency", {}, params, inputs={"manifest": args.manifest}) as tracked, \
            artifacts.atomic_dir(args.out) as tmp:
        maps, rows, seconds = [], [], 0.0
        for record, stored in tqdm(zip(manifest.itertuples(), images), total=len(manifest), desc="saliency",
                                   mininterval=5.0):
            image = read_image(stored)
            started = time.perf_counter()
            saliency = saliency_map(image, params)
            seconds += time.perf_counter() - started
            stored = to_uint8(saliency)
            relative = Path("maps") / f"{record.image_id}.png"
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(stored).save(tmp / relative)
            maps.append(stored)
            rows.append({"image_id": record.image_id, "split": record.split, "label": record.label,
                         "map": relative.as_posix(), "mean_saliency": float(saliency.mean())})
        # a train split that keeps its images' own sizes (prepare.keep_train_size) has maps but no tensor of them
        stacked = [i for i, split in enumerate(manifest["split"]) if split != "train" or not own_size]
        if len({maps[i].shape for i in stacked}) != 1:
            raise UserError(f"the images of {args.manifest} differ in size ({sorted({m.shape for m in maps})}); "
                            "saliency maps need one size, so rerun prepare with a fixed image_size")
        pd.DataFrame(rows).to_csv(tmp / "index.csv", index=False)
        save_maps(tmp / MAPS_FILE, [manifest["image_id"].iloc[i] for i in stacked],
                  [manifest["split"].iloc[i] for i in stacked], np.stack([maps[i] for i in stacked]), params)
        shown = [i for i, split in enumerate(manifest["split"]) if split == "test"][:shown_count]
        saliency_grid([read_image(images[i]) for i in shown], [maps[i] / 255.0 for i in shown],
                      [manifest["image_id"].iloc[i] for i in shown],
                      f"{params['method']} saliency (working width {params['working_width']} px)", tmp / "grid.png")
        summary = {"params": params, "num_images": len(rows), "seconds_per_image": seconds / max(len(rows), 1),
                   "split_counts": manifest["split"].value_counts().to_dict(), "run_id": tracked.run_id}
        artifacts.write_json(tmp / "saliency.json", summary)
        tracked.log_metrics({"num_images": len(rows), "seconds_per_image": summary["seconds_per_image"]})
        for name in ("index.csv", "grid.png", "saliency.json"):
            tracked.log_artifact(tmp / name)
    return args.out


if __name__ == "__main__":
    run(main)

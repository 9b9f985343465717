"""Stage: cache the task model's intermediate feature maps for every split of a dataset.

``python -m taskcodec.stages.extract_features --params '<tasks.<task>.features as JSON>'
--task-model results/task/<task>/model.pt --manifest results/prepared/manifest.csv --out results/task/<task>/features``

The output folder (written atomically) holds ``<split>.pt`` for train, val and test — a dict
with ``features`` (float N×C×h×w, the output of module ``tasks.<task>.features.layer``),
``image_ids``, ``labels`` and ``layer`` — and ``features.json`` with their shapes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import artifacts
from taskcodec.data.manifest import SPLITS, split_images
from taskcodec.data.tensors import images_to_tensor
from taskcodec.device import resolve_device
from taskcodec.params import check_section
from taskcodec.stages.cli import params_argument, run, run_arguments
from taskcodec.tasks.checkpoint import load_task_model
from taskcodec.tasks.features import extract_features
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.extract_features",
                                     description=__doc__.splitlines()[0])
    params_argument(parser, None)  # tasks.<task>.features, checked once the model says its task
    run_arguments(parser)
    parser.add_argument("--task-model", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, info = load_task_model(args.task_model, device, manifest=args.manifest)
    check_section(f"tasks.{info['task'].name}.features", params)
    with stage_run("extract_features", {"layer": params["layer"]}, params,
                   inputs={"task_model": args.task_model, "manifest": args.manifest}) as tracked:
        shapes = {}
        with artifacts.atomic_dir(args.out) as tmp:
            for split in SPLITS:
                records = split_images(args.manifest, split)
                images = images_to_tensor([path for _, path, _ in records])
                features = extract_features(model, images, params["layer"], params["batch_size"], device)
                torch.save({"features": features, "image_ids": [image_id for image_id, _, _ in records],
                            "labels": torch.tensor([label for _, _, label in records]), "layer": params["layer"]},
                           tmp / f"{split}.pt")
                shapes[split] = list(features.shape)
            artifacts.write_json(tmp / "features.json", {
                "layer": params["layer"], "shapes": shapes, "task_model": str(args.task_model),
                "task_model_sha256": artifacts.file_digest(args.task_model), "arch": info["model_params"]["arch"],
                "params": params, "run_id": tracked.run_id,
            })
        tracked.log_metrics({"images": sum(shape[0] for shape in shapes.values()),
                             "channels": shapes["test"][1], "height": shapes["test"][2], "width": shapes["test"][3]})
        tracked.log_artifact(args.out / "features.json")
    return args.out


if __name__ == "__main__":
    run(main)

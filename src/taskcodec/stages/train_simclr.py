"""Stage: train the self-supervised SimCLR network whose group-1 features the seed-001 codec reads.

``python -m taskcodec.stages.train_simclr --params '<simclr section as JSON>' --manifest results/prepared/manifest.csv
--out results/simclr/model.pt``

Trains on the train split's images without their labels (:mod:`taskcodec.selfsupervised.training`: two augmented
views per image, NT-Xent) and validates on the val split: the NT-Xent loss and the view-matching top-1 (how often
a view's nearest other view in the batch is its partner). ``simclr.model: resnet50`` with ``simclr.weights`` a local
state dict (e.g. converted SimCLR weights) starts from those weights; with ``steps: 0`` it only validates them.
Writes ``model.pt`` (:func:`~taskcodec.selfsupervised.checkpoint.save_simclr`; the codec loads it with
:func:`~taskcodec.selfsupervised.checkpoint.load_feature_extractor`), ``metrics.json`` and ``train_log.csv``; a
``resume.pt`` beside them lets a killed job continue (on SIGTERM the job saves it and exits with status 143
without writing the outputs). With ``--mem-mb`` (the job's memory) a split whose decoded images would take more
than its share of a quarter of it (the splits share it by their sizes) is read from its files batch by batch,
with the same batches and numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import artifacts
from taskcodec.data.manifest import split_images
from taskcodec.data.sources import image_rows, loader_workers, memory_budgets
from taskcodec.errors import UserError
from taskcodec.selfsupervised.checkpoint import save_simclr
from taskcodec.selfsupervised.models import GROUP1_STRIDE, build_simclr, group1_channels
from taskcodec.selfsupervised.training import train_simclr
from taskcodec.stages.cli import (apply_run_arguments, final_validation, finish_training, memory_argument,
                                  params_argument, run, run_arguments, share_threads, training_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_simclr",
                                     description=__doc__.splitlines()[0])
    params_argument(parser, "simclr")
    run_arguments(parser)
    memory_argument(parser)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    device = apply_run_arguments(args)
    torch.manual_seed(params["seed"])
    model = build_simclr(params)  # a missing or unfitting simclr.weights file stops here, before any work
    paths = {split: [path for _, path, _ in split_images(args.manifest, split)] for split in ("train", "val")}
    if len(paths["val"]) < 2:
        raise UserError(f"manifest {args.manifest} has {len(paths['val'])} val image; the contrastive validation "
                        "needs at least 2: rerun prepare with a larger dataset or val fraction")
    images = {}
    budgets = memory_budgets(args.mem_mb, [len(split_paths) for split_paths in paths.values()])
    for (split, split_paths), budget in zip(paths.items(), budgets):
        # in memory, or read from the files (the train split by loader workers; the log says)
        images[split], held = image_rows(split_paths, budget, loader_workers(args.threads) if split == "train" else 0)
        print(f"{split} images: {held}", flush=True)
    share_threads(args.threads, [images["train"]])
    data_id = artifacts.file_digest(args.manifest)
    if params["weights"] is not None:
        data_id += artifacts.file_digest(params["weights"])
    inputs = {"manifest": args.manifest, **({"weights": Path(params["weights"])} if params["weights"] else {})}

    with training_run("train_simclr", {"model": params["model"]}, params, inputs, device) as tracked:
        out_dir = args.out.parent
        trained = train_simclr(model, params, images["train"], images["val"], device, out_dir / "resume.pt",
                               out_dir / "train_log.csv", data_id=data_id, desc="simclr")
        final = final_validation(trained.history)
        batch = min(params["batch_size"], len(images["val"]))
        metrics = {
            "model": params["model"], "group1_channels": group1_channels(model.trunk),
            "stride": GROUP1_STRIDE, "val_loss": final["loss"], "val_top1": final["top1"],
            "chance_top1": 1.0 / (2 * batch - 1), "steps": trained.step, "train_seconds": trained.elapsed_s,
            "images": {split: len(tensor) for split, tensor in images.items()}, "device": str(device),
            "run_id": tracked.run_id,
        }
        save_simclr(args.out, model.cpu(), params, metrics)
        finish_training(tracked, args.out, trained, metrics, ("val_loss", "val_top1"))
    return args.out


if __name__ == "__main__":
    run(main)

"""Stage: train a compressed-domain classifier on the cached latents ŷ, σ̂ of one codec (seed 004's baseline).

``python -m taskcodec.stages.train_latent_classifier --params '<{"model": ..., "train": ...} of latent_classifier>'
--train-cache C/train --val-cache C/val --test-cache C/test --manifest results/prepared/manifest.csv
--out results/latent/<codec>/model.pt``

Writes ``model.pt`` (:func:`~taskcodec.tasks.checkpoint.save_latent_classifier`), ``train_log.csv``
and ``metrics.json`` with test top-1/top-5, the test set's mean actual bpp (from the cached
bitstreams' bytes) and the classifier's throughput on decoded latents (images/s). With ``--mem-mb`` (the job's
memory) a cache whose latent shards would take more than its share of a quarter of it (the caches share it by
their sizes) is not loaded: its shards are mapped from their files and the rows a batch needs are read when it
needs them (:class:`~taskcodec.codecs.cache.ShardRows`), with the same numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import artifacts
from taskcodec.data.sources import memory_budgets
from taskcodec.errors import UserError
from taskcodec.stages.cli import (apply_run_arguments, finish_training, memory_argument, params_argument, run,
                                  run_arguments)
from taskcodec.tasks.checkpoint import save_latent_classifier
from taskcodec.tasks.evaluation import classification_metrics, finite_or_none, predict_logits
from taskcodec.tasks.labels import class_names
from taskcodec.codecs.cache import read_latent_cache, same_codec
from taskcodec.tasks.labels import require_labels
from taskcodec.tasks.latent_training import train_latent_classifier
from taskcodec.tasks.training import epoch_metrics
from taskcodec.tasks.speed import latent_classifier_throughput
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_latent_classifier",
                                     description=__doc__.splitlines()[0])
    params_argument(parser, "latent_classifier", keys=["model", "train"])
    run_arguments(parser)
    memory_argument(parser)
    for split in ("train", "val", "test"):
        parser.add_argument(f"--{split}-cache", type=Path, required=True, help=f"latent cache of the {split} split")
    parser.add_argument("--manifest", type=Path, required=True, help="prepared manifest.csv (class names)")
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params, train_params = args.params, args.params["train"]
    device = apply_run_arguments(args)
    names = class_names(args.manifest, "classification")
    folders = {split: getattr(args, f"{split}_cache") for split in ("train", "val", "test")}
    counts = [artifacts.read_json(folder / "cache.json")["images"] for folder in folders.values()]
    budgets = memory_budgets(args.mem_mb, counts)
    caches = {split: read_latent_cache(folder, budget) for (split, folder), budget in zip(folders.items(), budgets)}
    for split, latents in caches.items():
        print(f"{split} latents: {latents.held}", flush=True)
    codec = same_codec(caches)
    for split, latents in caches.items():
        require_labels(latents.labels, getattr(args, f"{split}_cache"))
        if int(latents.labels.max()) >= len(names):
            raise UserError(f"{getattr(args, f'{split}_cache')} has label {int(latents.labels.max())} but "
                            f"{args.manifest} has {len(names)} classes; cache the dataset of this manifest")

    wildcards = {"codec": codec["codec"], **codec["hyper"], "lmbda": codec["lmbda"],
                 "arch": params["model"]["arch"]}
    inputs = {"train_index": args.train_cache / "index.csv", "test_index": args.test_cache / "index.csv"}
    with stage_run("train_latent_classifier", wildcards, params, inputs=inputs) as tracked:
        tracked.set_tags({"device": device})
        torch.manual_seed(train_params["seed"])
        out_dir = args.out.parent
        resume_path = out_dir / "resume.pt"
        model, trained = train_latent_classifier(params["model"], train_params, caches["train"], caches["val"],
                                               names, device, resume_path, out_dir / "train_log.csv")
        test = caches["test"]
        logits = predict_logits(model, (test.y_hat, test.scales_hat), train_params["batch_size"], device)
        scores = classification_metrics(logits, test.labels)
        speed = latent_classifier_throughput(model, test.y_hat, test.scales_hat, train_params["batch_size"], device)
        metrics = {
            **codec, "arch": params["model"]["arch"], "num_classes": len(names), "class_names": names,
            "latent_shape": list(test.y_hat.shape[1:]), "test_top1": scores["top1"], "test_top5": finite_or_none(scores["top5"]),
            "test_loss": scores["loss"], "bpp": float(test.index["bpp"].mean()),
            "bpp_estimated": float(test.index["bpp_estimated"].mean()), "latent_images_per_s": speed,
            **epoch_metrics(trained), "val_top1": trained.best["val_top1"],
            "images": {split: len(latents.labels) for split, latents in caches.items()},
            "device": str(device), "run_id": tracked.run_id,
        }
        save_latent_classifier(args.out, model.cpu(), params["model"], test.y_hat.shape[1], len(names), names,
                               train_params, metrics)
        finish_training(tracked, args.out, trained, metrics,
                        ("test_top1", "test_top5", "test_loss", "bpp", "latent_images_per_s", "val_top1"))
    return args.out


if __name__ == "__main__":
    run(main)

"""Stage: train one learned codec on rate + λ·distortion.

``python -m taskcodec.stages.train_codec --params '<codec.train as JSON>' --arch bmshj2018-hyperprior
--hyper '{"N": 64, "M": 96}' --lmbda 0.0067 --manifest results/prepared/manifest.csv [--saliency results/saliency]
--out results/codecs/.../model.pt``

With ``saliency_floor`` set in the params, ``--saliency`` (the saliency stage's
folder) supplies the maps that weight the MSE (seed 003).

Writes ``model.pt`` (weights after ``update()``, with the resolved params),
``train_log.csv`` and ``metrics.json`` beside it. A ``resume.pt`` next to
them lets a killed job continue; it is removed once the model is saved. On SIGTERM the
job saves ``resume.pt`` and exits with status 143 without writing the outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import artifacts
from taskcodec.codecs.checkpoint import initial_weights, save_codec
from taskcodec.codecs.registry import build_codec
from taskcodec.codecs.training import train_codec
from taskcodec.data.manifest import split_images
from taskcodec.data.tensors import images_to_tensor
from taskcodec.saliency import saliency_inputs
from taskcodec.tracking import stage_run
from taskcodec.stages.cli import (apply_run_arguments, final_validation, finish_training, hyper_object,
                                  params_argument, run, run_arguments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_codec", description=__doc__.splitlines()[0])
    params_argument(parser, "codec.train")
    run_arguments(parser)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--hyper", type=hyper_object, required=True,
                        help="the architecture's hyperparameters as a JSON object, e.g. '{\"N\": 64, \"M\": 96}'")
    parser.add_argument("--lmbda", type=float, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--saliency", type=Path, help="saliency stage folder (needed when saliency_floor is set)")
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    device = apply_run_arguments(args)
    train_records = split_images(args.manifest, "train")
    val_records = split_images(args.manifest, "val")
    train_images = images_to_tensor([path for _, path, _ in train_records])
    val_images = images_to_tensor([path for _, path, _ in val_records])
    maps, saliency_id, inputs = saliency_inputs(args.saliency, params["saliency_floor"], [train_records, val_records],
                                                tuple(train_images.shape[-2:]))

    torch.manual_seed(params["seed"])  # the initial weights
    model = build_codec(args.arch, args.hyper)
    wildcards = {"arch": args.arch, **args.hyper, "lmbda": args.lmbda}
    with stage_run("train_codec", wildcards, params, inputs={"manifest": args.manifest, **inputs}) as tracked:
        tracked.set_tags({"device": device})
        initial_weights(model, params["init"], args.arch)
        trained = train_codec(model, args.lmbda, params, train_images, val_images, device,
                              args.out.parent / "resume.pt", args.out.parent / "train_log.csv",
                              data_id=artifacts.file_digest(args.manifest) + saliency_id,
                              train_saliency=maps[0], val_saliency=maps[1])
        metrics = {"arch": args.arch, "hyper": args.hyper, "lmbda": args.lmbda, "steps": trained.step,
                   "train_seconds": trained.elapsed_s, "val": final_validation(trained.history),
                   "device": str(device), "run_id": tracked.run_id}
        save_codec(args.out, model.cpu(), args.arch, args.hyper, args.lmbda, params, metrics)
        finish_training(tracked, args.out, trained, metrics)
    return args.out


if __name__ == "__main__":
    run(main)

"""Stage: fine-tune a trained codec through a frozen task model, ``R + τ·λ·D + w·L_task`` (seed 000).

``python -m taskcodec.stages.finetune_codec --params '<finetune section as JSON>' --model results/codecs/.../model.pt
--task-model results/task/<task>/model.pt --tau 1.0 --manifest results/prepared/manifest.csv [--saliency results/saliency]
--out results/finetuned/.../model.pt``

λ is the one the codec was trained with (from its checkpoint). Writes
``model.pt`` with :func:`taskcodec.codecs.checkpoint.save_codec` (so
``cache_latents`` and ``evaluate_codec`` load it like any trained codec),
``train_log.csv`` and ``metrics.json`` (validation bpp, PSNR, MSE, accuracy,
τ, w, run id) beside it. A ``resume.pt`` lets a killed job continue; it is
removed once the model is saved. On SIGTERM the job saves ``resume.pt`` and
exits with status 143 without writing the outputs. Under ``torchrun`` it trains
in several processes, and with ``--mem-mb`` it reads a split too large for its
share of the job's memory from its files, as ``train_codec`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence


from taskcodec import artifacts, distributed
from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.codecs.finetune import finetune_codec
from taskcodec.data.manifest import split_images, split_rows
from taskcodec.data.sources import stored_size
from taskcodec.errors import UserError
from taskcodec.saliency import saliency_inputs
from taskcodec.stages.cli import (final_validation, finish_training, image_sources, memory_argument, params_argument,
                                  run, run_arguments, training_run)
from taskcodec.tasks.checkpoint import load_task_model
from taskcodec.tasks.training import split_targets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.finetune_codec",
                                     description=__doc__.splitlines()[0])
    params_argument(parser, "finetune.train")
    run_arguments(parser)
    memory_argument(parser)
    parser.add_argument("--model", type=Path, required=True, help="pretrained codec model.pt (from train_codec)")
    parser.add_argument("--task-model", type=Path, required=True, help="task model.pt (from train_task), kept frozen")
    parser.add_argument("--tau", type=float, required=True, help="weight τ of the distortion term (1 = as pretrained)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--saliency", type=Path, help="saliency stage folder (needed when saliency_floor is set)")
    parser.add_argument("--out", type=Path, required=True, help="fine-tuned model.pt to write")
    return parser



def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    if args.tau < 0:
        raise UserError(f"--tau is {args.tau}; give a weight >= 0 for the distortion term")
    with distributed.session(args.threads, args.device, "finetune_codec") as device:
        task_model, task_info = load_task_model(args.task_model, device, manifest=args.manifest)
        train_targets, val_targets = (split_targets(split_rows(args.manifest, split), task_info["task"])
                                      for split in ("train", "val"))
        train_records, val_records = split_images(args.manifest, "train"), split_images(args.manifest, "val")
        model, codec = load_codec(args.model)
        size = stored_size(train_records[0][1])
        maps, saliency_id, saliency_input = saliency_inputs(args.saliency, params["saliency_floor"],
                                                            [train_records, val_records], size)
        train_source, val_source = image_sources({"train": train_records, "val": val_records}, maps, size, args,
                                                 paddings=[params["crop_padding"], 0])

        wildcards = {"arch": codec["arch"], **codec["hyper"], "lmbda": codec["lmbda"], "tau": args.tau}
        inputs = {"manifest": args.manifest, "model": args.model, "task_model": args.task_model, **saliency_input}
        with training_run("finetune_codec", wildcards, params, inputs, device) as tracked:
            data_id = "".join(artifacts.file_digest(path)
                              for path in (args.manifest, args.model, args.task_model)) + saliency_id
            trained = finetune_codec(model, codec["lmbda"], args.tau, task_model, task_info["task"], params,
                                     train_source, train_targets, val_source, val_targets, device,
                                     args.out.parent / "resume.pt", args.out.parent / "train_log.csv",
                                     data_id=data_id)
            if tracked is None:  # another process of a multi-process training: the main one writes
                return args.out
            metrics = {"arch": codec["arch"], "hyper": codec["hyper"], "lmbda": codec["lmbda"], "tau": args.tau,
                       "task_weight": params["task_weight"], "saliency_floor": params["saliency_floor"],
                       "pretrained": str(args.model), "task_model": str(args.task_model),
                       "task_classes": task_info["class_names"], "steps": trained.step,
                       "train_seconds": trained.elapsed_s, "val": final_validation(trained.history),
                       "device": str(device), "processes": distributed.world_size(), "run_id": tracked.run_id}
            save_codec(args.out, model.cpu(), codec["arch"], codec["hyper"], codec["lmbda"],
                       {**params, "tau": args.tau, "pretrained_params": codec["params"]}, metrics)
            finish_training(tracked, args.out, trained, metrics)
    return args.out


if __name__ == "__main__":
    run(main)

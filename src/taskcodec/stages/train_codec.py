"""Stage: train one learned codec on rate + λ·distortion.

``python -m taskcodec.stages.train_codec --params '<codec.train as JSON>' --arch bmshj2018-hyperprior
--hyper '{"N": 64, "M": 96}' --lmbda 0.0067 --manifest results/prepared/manifest.csv [--saliency results/saliency]
--out results/codecs/.../model.pt``

With ``saliency_floor`` set in the params, ``--saliency`` (the saliency stage's
folder) supplies the maps that weight the MSE (seed 003). A codec built on the
frozen task model (``scalable-hyperprior``, seed 002) takes ``--task-model``
(train_task's model.pt) and ``--task-lmbda`` and trains on
R + λ_task·D(features) + λ·D(image); its checkpoint carries the task model.

A variable-rate codec (seed 001's ``pyramid``, CompressAI's ``*-vbr``: ``variable_rate`` architectures)
takes ``--lmbdas`` instead of ``--lmbda``, one λ per operating point, ascending, and gets ``levels`` from
their count; with ``--ssl-model`` (train_simclr's model.pt) the pyramid reads the self-supervised features
(with ``simclr`` 1; with 0 and β = 0 it reads no network and the option is ignored), and ``--perceptual-weight``
β weighs the distortion of those features (R + λ_k·D + β·λ_k·P).

With ``--mem-mb`` (the job's memory; Snakemake passes the rule's ``mem_mb``) a split whose decoded images
would take more than its share of a quarter of it (the splits share it by their sizes) is read from its files
in batches by loader processes instead of being held in memory (:mod:`taskcodec.data.sources`; the log says
which), with the same batches and numbers.

``--init-from`` (with ``init: neighbour`` or ``smaller_neighbour``; the workflow passes the trained codec of the
sweep's next larger or next smaller λ) starts from that checkpoint instead of the params' ``init``; its digest joins the resume fingerprint.

Writes ``model.pt`` (weights after ``update()``, with the resolved params),
``train_log.csv`` and ``metrics.json`` beside it. A ``resume.pt`` next to
them lets a killed job continue; it is removed once the model is saved. On SIGTERM the
job saves ``resume.pt`` and exits with status 143 without writing the outputs.

``torchrun --standalone --nnodes 1 --nproc-per-node <n> -m taskcodec.stages.train_codec …`` trains in n
processes (:mod:`taskcodec.distributed`; one per GPU), each with ``--threads`` // n threads; the main one
logs and writes the outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import artifacts, distributed
from taskcodec.codecs.checkpoint import initial_weights, save_codec
from taskcodec.codecs.registry import build_codec, is_variable_rate, needs_task_model, reads_ssl_model
from taskcodec.codecs.training import train_codec
from taskcodec.data.manifest import own_sizes, split_images
from taskcodec.data.sources import stored_size
from taskcodec.errors import UserError
from taskcodec.params import CHAINS
from taskcodec.saliency import saliency_inputs
from taskcodec.tasks.checkpoint import load_task_model
from taskcodec.stages.cli import (final_validation, finish_training, hyper_object, image_sources, memory_argument,
                                  params_argument, run, run_arguments, training_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_codec", description=__doc__.splitlines()[0])
    params_argument(parser, "codec.train")
    run_arguments(parser)
    memory_argument(parser)
    parser.add_argument("--rule", default="train_codec", help="rule name for the MLflow run (Snakemake passes its own)")
    parser.add_argument("--arch", required=True)
    parser.add_argument("--hyper", type=hyper_object, required=True,
                        help="the architecture's hyperparameters as a JSON object, e.g. '{\"N\": 64, \"M\": 96}'")
    rates = parser.add_mutually_exclusive_group(required=True)
    rates.add_argument("--lmbda", type=float)
    rates.add_argument("--lmbdas", type=lambda text: [float(value) for value in text.split(",")],
                       help="a variable-rate codec's λ, one per operating point, comma-separated, ascending")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--saliency", type=Path, help="saliency stage folder (needed when saliency_floor is set)")
    parser.add_argument("--task-model", type=Path,
                        help="the frozen task model a codec built on one (scalable-hyperprior) takes its features from")
    parser.add_argument("--task-lmbda", type=float, help="weight of the task-feature distortion (scalable-hyperprior)")
    parser.add_argument("--ssl-model", type=Path, help="train_simclr's model.pt (a codec built on it: pyramid)")
    parser.add_argument("--perceptual-weight", type=float, default=0.0,
                        help="β of a variable-rate codec's perceptual term (needs --ssl-model)")
    parser.add_argument("--init-from", type=Path, help="a checkpoint of the same codec to start from, in place of "
                        "the params' init (codec.train.init: neighbour or smaller_neighbour: the sweep's next "
                        "larger or smaller λ, from Snakemake)")
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def frozen_task_model(args: argparse.Namespace) -> tuple[torch.nn.Module | None, dict]:
    """The task model an architecture built on one needs (``--task-model``), and what its checkpoint records
    of it (``model``: how to rebuild it; ``digest``: part of the resume fingerprint); none for the others."""
    if not needs_task_model(args.arch):
        return None, {"model": None, "digest": ""}
    if args.task_model is None or args.task_lmbda is None:
        raise UserError(f"codec {args.arch} is built on the frozen task model: give --task-model (train_task's "
                        "model.pt) and --task-lmbda")
    task_model, info = load_task_model(args.task_model)
    return task_model, {"model": {"task": info["task"].name, "model_params": info["model_params"],
                                  "class_names": info["class_names"]},
                        "digest": artifacts.file_digest(args.task_model)}


def frozen_ssl_model(args: argparse.Namespace) -> tuple[torch.nn.Module | None, dict | None]:
    """The self-supervised network (``--ssl-model``) and its params, for a model that reads one."""
    if args.ssl_model is None or not reads_ssl_model(args.arch, args.hyper, args.perceptual_weight):
        return None, None
    from taskcodec.selfsupervised import FeatureExtractor, load_simclr

    network, info = load_simclr(args.ssl_model)
    return FeatureExtractor(network), {"params": info["params"]}


def rate_hyper(args: argparse.Namespace) -> tuple[dict, float | list[float]]:
    """The constructor hyperparameters and the λ (or one λ per point) of this job."""
    variable = is_variable_rate(args.arch)
    if variable != (args.lmbdas is not None):
        raise UserError(f"codec {args.arch} is {'a variable-rate' if variable else 'a single-rate'} codec: give "
                        f"{'--lmbdas (one λ per operating point)' if variable else '--lmbda'}")
    if variable:
        return {**args.hyper, "levels": len(args.lmbdas)}, args.lmbdas
    return args.hyper, args.lmbda


def initial_checkpoint(args: argparse.Namespace, init: str | None) -> str | None:
    """The weights this job starts from: ``--init-from`` (the neighbour's checkpoint) or the params' ``init``.

    ``init: neighbour`` starts each λ of the sweep from the trained codec of the next larger λ, as CompressAI's
    zoo models were trained, ``smaller_neighbour`` from that of the next smaller λ; the workflow passes that
    checkpoint, and the chain's first λ starts from scratch."""
    if args.init_from is not None:
        if init not in CHAINS:
            raise UserError(f"--init-from {args.init_from} is for init: {' or '.join(CHAINS)}, but the params' init "
                            f"is {init}")
        return str(args.init_from)
    return None if init in CHAINS else init


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    with distributed.session(args.threads, args.device, "train_codec") as device:
        train_records = split_images(args.manifest, "train")
        val_records = split_images(args.manifest, "val")
        height, width = stored_size(val_records[0][1])
        train_sizes = own_sizes(args.manifest, "train")  # prepare.keep_train_size: each training image's own
        if train_sizes is not None and params["saliency_floor"] is not None:
            raise UserError("saliency_floor weights the distortion by maps of the image_size² images, but the "
                            "training images keep their own sizes (prepare.keep_train_size); set saliency_floor: null")
        maps, saliency_id, inputs = saliency_inputs(args.saliency, params["saliency_floor"],
                                                    [train_records, val_records], (height, width))
        train_images, val_images = image_sources({"train": train_records, "val": val_records}, maps,
                                                 (height, width), args, sizes=[train_sizes, None])

        task_model, task_info = frozen_task_model(args)
        if task_model is not None:
            inputs["task_model"] = args.task_model
        ssl_model, ssl_info = frozen_ssl_model(args)
        if ssl_model is not None:
            inputs["ssl_model"] = args.ssl_model
            task_info["digest"] += artifacts.file_digest(args.ssl_model)
        hyper, lmbda = rate_hyper(args)
        init = initial_checkpoint(args, params["init"])
        if args.init_from is not None:
            inputs["init"] = args.init_from
        torch.manual_seed(params["seed"])  # the initial weights
        model = build_codec(args.arch, hyper, task_model, ssl_model)
        wildcards = {"arch": args.arch, **hyper, "lmbda": lmbda,
                     **({"task_lmbda": args.task_lmbda} if task_model is not None else {})}
        with training_run(args.rule, wildcards, params, {"manifest": args.manifest, **inputs}, device) as tracked:
            initial_weights(model, init, args.arch)
            if args.lmbdas is not None:  # after the initial weights: this run's λ decide
                model.set_lambdas(args.lmbdas)
            trained = train_codec(model, lmbda, params, train_images, val_images, device,
                                  args.out.parent / "resume.pt", args.out.parent / "train_log.csv",
                                  data_id=artifacts.file_digest(args.manifest) + saliency_id + task_info["digest"]
                                  + ("own-sizes" if train_sizes is not None else "")
                                  + (artifacts.file_digest(args.init_from) if args.init_from is not None else ""),
                                  task_lmbda=args.task_lmbda if task_model is not None else None,
                                  perceptual_weight=args.perceptual_weight)
            if tracked is None:  # another process of a multi-process training: the main one writes
                return args.out
            metrics = {"arch": args.arch, "hyper": hyper, "lmbda": lmbda, "steps": trained.step,
                       **({"task_lmbda": args.task_lmbda} if task_model is not None else {}),
                       "train_seconds": trained.elapsed_s, "rollbacks": trained.rollbacks,
                       "val": final_validation(trained.history),
                       "device": str(device), "processes": distributed.world_size(), "run_id": tracked.run_id}
            save_codec(args.out, model.cpu(), args.arch, hyper, lmbda, params, metrics, task_info["model"], ssl_info)
            finish_training(tracked, args.out, trained, metrics)
    return args.out


if __name__ == "__main__":
    run(main)

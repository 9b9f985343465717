"""Stage: fine-tune a codec's encoder jointly with a latent classifier (seed 004, Table 4), then test on real bitstreams.

``python -m taskcodec.stages.train_joint_classifier --params '<latent_classifier.joint as JSON>'
--model results/codecs/.../model.pt --classifier results/latent/.../model.pt
--manifest results/prepared/manifest.csv --out results/joint/<codec>``

Starts from the pretrained codec and the latent classifier trained on its frozen latents,
fine-tunes both on ``CE + rate_weight · bpp`` (see :mod:`taskcodec.tasks.joint`) and entropy-codes
the test split to real bitstreams. The output folder gets ``model.pt`` (the fine-tuned latent
classifier), ``codec.pt`` (the fine-tuned codec; its synthesis is the pretrained one),
``train_log.csv`` and ``metrics.json``: actual bpp, top-1 and top-5 after fine-tuning and,
as ``before_*``, of the pretrained codec and classifier on the same test images. With ``--mem-mb``
(the job's memory) a split too large for its share of a quarter of it (the splits share it by their sizes) is
read from its files batch by batch, with the same numbers (:func:`~taskcodec.tasks.training.labeled_splits`).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Sequence

from taskcodec import artifacts
from taskcodec.codecs.checkpoint import load_codec, save_codec
from taskcodec.data.sources import loader_workers
from taskcodec.stages.cli import (apply_run_arguments, finish_training, memory_argument, params_argument, run,
                                  run_arguments, share_threads)
from taskcodec.tasks.checkpoint import load_latent_classifier, save_latent_classifier
from taskcodec.tasks.evaluation import finite_or_none
from taskcodec.tasks.joint import evaluate_bitstreams, train_joint
from taskcodec.tasks.labels import class_names
from taskcodec.tasks.registry import build_task
from taskcodec.tasks.training import epoch_metrics, labeled_splits
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_joint_classifier",
                                     description=__doc__.splitlines()[0])
    params_argument(parser, "latent_classifier.joint", omit=["enabled"])
    run_arguments(parser)
    memory_argument(parser)
    parser.add_argument("--model", type=Path, required=True, help="pretrained codec model.pt")
    parser.add_argument("--classifier", type=Path, required=True, help="latent classifier model.pt of that codec")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    device = apply_run_arguments(args)
    names = class_names(args.manifest, "classification")
    codec, meta = load_codec(args.model, device)
    classifier, info = load_latent_classifier(args.classifier, device, expect_num_classes=len(names))
    classification = build_task("classification", names)  # the latent classifier's task, whatever the pixel task
    sets = labeled_splits(args.manifest, classification, args.mem_mb, loader_workers(args.threads))
    share_threads(args.threads, [sets["train"].inputs[0]])
    test_images, test_labels = sets["test"].inputs[0], sets["test"].labels

    wildcards = {"arch": meta["arch"], **meta["hyper"], "lmbda": meta["lmbda"]}
    inputs = {"model": args.model, "classifier": args.classifier, "manifest": args.manifest}
    with stage_run("train_joint_classifier", wildcards, params, inputs=inputs) as tracked:
        tracked.set_tags({"device": device})
        before = evaluate_bitstreams(codec, classifier, test_images, test_labels, params["batch_size"], device)
        data_id = hashlib.sha256("".join(artifacts.file_digest(p) for p in (args.model, args.classifier, args.manifest))
                                 .encode()).hexdigest()[:16]
        resume_path = args.out / "resume.pt"
        trained = train_joint(codec, classifier, params, sets["train"].inputs[0], sets["train"].labels,
                              sets["val"].inputs[0], sets["val"].labels, device, resume_path,
                              args.out / "train_log.csv", data_id=data_id)
        after = evaluate_bitstreams(codec, classifier, test_images, test_labels, params["batch_size"], device)
        metrics = {
            **wildcards, "codec": meta["codec_id"], "hyper": meta["hyper"], "classifier_arch": info["model_params"]["arch"], "num_classes": len(names),
            "class_names": names, "rate_weight": params["rate_weight"], "bpp": after["bpp"],
            "test_top1": after["top1"], "test_top5": finite_or_none(after["top5"]), "test_loss": after["loss"],
            "before_bpp": before["bpp"], "before_test_top1": before["top1"],
            "before_test_top5": finite_or_none(before["top5"]), "before_test_loss": before["loss"],
            **epoch_metrics(trained), "test_images": len(test_labels), "codec_path": str(args.model),
            "classifier": str(args.classifier), "device": str(device), "run_id": tracked.run_id,
        }
        save_latent_classifier(args.out / "model.pt", classifier.cpu(), info["model_params"], info["latent_channels"],
                               len(names), names, params, metrics)
        save_codec(args.out / "codec.pt", codec.cpu(), meta["arch"], meta["hyper"], meta["lmbda"], params,
                   metrics)
        finish_training(tracked, args.out / "model.pt", trained, metrics,
                        ("bpp", "test_top1", "test_top5", "test_loss", "before_bpp", "before_test_top1"))
        tracked.log_file_reference("codec", args.out / "codec.pt")
    return args.out


if __name__ == "__main__":
    run(main)

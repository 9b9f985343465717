"""Stage: train the pixel-domain task model (the classifier on uncompressed images).

``python -m taskcodec.stages.train_task --params '<{"model": task.model, "train": task.train} as JSON>'
--manifest results/prepared/manifest.csv --out results/task/model.pt``

Trains on the train split, keeps the epoch with the best val top-1 and evaluates top-1/top-5
on the test split — the uncompressed reference every codec is compared with. Writes
``model.pt`` (:func:`~taskcodec.tasks.checkpoint.save_task_model`), ``metrics.json`` and
``train_log.csv``; a ``resume.pt`` beside them lets a killed job continue.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch

from taskcodec import io
from taskcodec.data.manifest import split_images
from taskcodec.data.tensors import images_to_tensor
from taskcodec.device import resolve_device
from taskcodec.stages.cli import params_argument, run, threads_argument
from taskcodec.tasks.checkpoint import save_task_model
from taskcodec.tasks.evaluation import classification_metrics, finite_or_none, predict_logits
from taskcodec.tasks.labels import class_names
from taskcodec.tasks.models import build_task_model
from taskcodec.tasks.training import LabeledSet, train_classifier
from taskcodec.tracking import StageRun, stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_task", description=__doc__.splitlines()[0])
    params_argument(parser)
    threads_argument(parser)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def labeled_split(manifest: Path, split: str) -> LabeledSet:
    """uint8 images and labels of one manifest split."""
    records = split_images(manifest, split)
    return LabeledSet((images_to_tensor([path for _, path, _ in records]),),
                      torch.tensor([label for _, _, label in records], dtype=torch.int64))


def record_training(tracked: StageRun, checkpoint: Path, history: list[dict[str, Any]], metrics: dict[str, Any],
                    logged: Sequence[str]) -> None:
    """After a saved classifier ``checkpoint``: write ``metrics.json`` beside it, drop its ``resume.pt``
    and log the per-epoch curves, the ``logged`` metrics (those not None), the files and the checkpoint's hash."""
    out_dir = checkpoint.parent
    io.write_json(out_dir / "metrics.json", metrics)
    (out_dir / "resume.pt").unlink(missing_ok=True)
    tracked.log_history(history, "")
    tracked.log_metrics({key: metrics[key] for key in logged if metrics[key] is not None})
    tracked.log_artifact(out_dir / "train_log.csv")
    tracked.log_artifact(out_dir / "metrics.json")
    tracked.log_file_reference("checkpoint", checkpoint)


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    train_params = params["train"]
    torch.set_num_threads(args.threads)
    device = resolve_device(train_params["device"])
    names = class_names(args.manifest)
    sets = {split: labeled_split(args.manifest, split) for split in ("train", "val", "test")}

    with stage_run("train_task", {"arch": params["model"]["arch"]}, params, inputs={"manifest": args.manifest}) as tracked:
        tracked.set_tags({"device": device})
        torch.manual_seed(train_params["seed"])
        model = build_task_model(params["model"], len(names))
        out_dir = args.out.parent
        resume_path = out_dir / "resume.pt"
        state = train_classifier(model, train_params, sets["train"], sets["val"], device, resume_path,
                                 out_dir / "train_log.csv", data_id=io.file_digest(args.manifest), desc="task model")
        test = classification_metrics(predict_logits(model, sets["test"].inputs, train_params["batch_size"], device),
                                      sets["test"].labels)
        metrics = {
            "arch": params["model"]["arch"], "num_classes": len(names), "class_names": names,
            "test_top1": test["top1"], "test_top5": finite_or_none(test["top5"]), "test_loss": test["loss"],
            "best_epoch": state.best_epoch, "val_top1": state.best_val_top1, "epochs": state.epoch,
            "steps": state.step, "train_seconds": state.elapsed_s,
            "images": {split: len(data) for split, data in sets.items()}, "device": str(device), "run_id": tracked.run_id,
        }
        save_task_model(args.out, model.cpu(), params["model"], len(names), names, train_params, metrics)
        record_training(tracked, args.out, state.history, metrics,
                        ("test_top1", "test_top5", "test_loss", "val_top1", "train_seconds"))
    return args.out


if __name__ == "__main__":
    run(main)

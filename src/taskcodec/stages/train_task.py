"""Stage: train the pixel-domain task model of one registered task (a key of ``tasks``) on uncompressed images.

``python -m taskcodec.stages.train_task --task classification --params '<{"model": tasks.<task>.model,
"train": tasks.<task>.train} as JSON>' --manifest results/prepared/manifest.csv
--out results/task/classification/model.pt``

Trains on the train split with the task's loss (:mod:`taskcodec.tasks.registry`), keeps the epoch with
the best validation value of its primary metric and evaluates every metric it declares (``test_<metric>``;
classification: top-1, top-5) on the test split — the uncompressed reference every codec is compared with. Writes
``model.pt`` (:func:`~taskcodec.tasks.checkpoint.save_task_model`), ``metrics.json`` and
``train_log.csv``; a ``resume.pt`` beside them lets a killed job continue (on SIGTERM the job saves it
and exits with status 143 without writing the outputs). With ``--mem-mb`` (the job's memory) a split whose
decoded images would take more than its share of a quarter of it (the splits share it by their sizes) is read
from its files batch by batch, with the same batches and numbers
(:func:`~taskcodec.tasks.training.labeled_split`; the log says which).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import artifacts
from taskcodec.data.sources import loader_workers
from taskcodec.params import check_section
from taskcodec.stages.cli import (apply_run_arguments, finish_training, memory_argument, params_argument, run,
                                  run_arguments, share_threads)
from taskcodec.tasks.checkpoint import save_task_model
from taskcodec.tasks.evaluation import finite_or_none, predict_logits
from taskcodec.tasks.labels import class_names
from taskcodec.tasks.registry import build_task, check_model_params
from taskcodec.tasks.training import epoch_metrics, labeled_splits, task_metrics, train_classifier
from taskcodec.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_task", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="the registered task whose model to train (a key of tasks)")
    params_argument(parser, None)  # tasks.<task> without its features: checked once the task is known
    run_arguments(parser)
    memory_argument(parser)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    check_model_params(args.task, params.get("model", {}), "--params")
    check_section(f"tasks.{args.task}", params, keys=["model", "train"])
    train_params = params["train"]
    device = apply_run_arguments(args)
    names = class_names(args.manifest, args.task)
    task = build_task(args.task, names)
    sets = labeled_splits(args.manifest, task, args.mem_mb, loader_workers(args.threads))
    share_threads(args.threads, [sets["train"].inputs[0]])
    primary = task.primary_metric

    with stage_run("train_task", {"task": task.name, "arch": params["model"].get("arch", task.name)}, params,
                   inputs={"manifest": args.manifest}) as tracked:
        tracked.set_tags({"device": device})
        torch.manual_seed(train_params["seed"])
        model = task.build_model(params["model"])
        out_dir = args.out.parent
        resume_path = out_dir / "resume.pt"
        trained = train_classifier(model, train_params, sets["train"], sets["val"], task, device, resume_path,
                                   out_dir / "train_log.csv", data_id=artifacts.file_digest(args.manifest),
                                   desc="task model")
        test_set = sets["test"]
        outputs = predict_logits(model, test_set.inputs, train_params["batch_size"], device, task, test_set.labels)
        test = task_metrics(task, outputs, test_set.labels)
        scores = {f"test_{name}": finite_or_none(test[name]) for name in task.metric_names}
        metrics = {
            "task": task.name, "arch": params["model"].get("arch"), "num_classes": len(names), "class_names": names,
            **scores, "test_loss": test["loss"], **epoch_metrics(trained), f"val_{primary}": trained.best[f"val_{primary}"],
            "images": {split: len(data) for split, data in sets.items()}, "device": str(device), "run_id": tracked.run_id,
        }
        save_task_model(args.out, model.cpu(), task.name, params["model"], len(names), names, train_params, metrics)
        finish_training(tracked, args.out, trained, metrics, (*scores, "test_loss", f"val_{primary}"))
    return args.out


if __name__ == "__main__":
    run(main)

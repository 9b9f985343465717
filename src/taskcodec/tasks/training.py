"""Supervised training of a task model (the pixel task model, or a latent classifier), resumable.

The loss, the training targets, their augmentation and the validation metrics are the task's
(:mod:`taskcodec.tasks.registry`; classification: cross-entropy, top-1, top-5; detection:
:mod:`taskcodec.tasks.detection`).

The recipe is the usual one for residual networks on small images (He et al., "Deep Residual
Learning for Image Recognition", CVPR 2016, §4.2): SGD with Nesterov momentum and weight decay (or Adam,
``optimizer: adam``, as Kazemi and Elqursh train their VQA model),
random translations (pad, then random crop back to size) and horizontal flips, with a cosine
learning-rate decay over the run. Seed 004 (Gupta et al., "Learning-Based Compression for
Machines", §2.3) augments the compressed-domain inputs ŷ and σ̂ the same way (random crop and
horizontal flip); here the same crop and flip are applied to every input tensor of a sample.
After every epoch the model is validated; the weights of the best validation epoch (the task's primary metric) are
the result. The loop is :func:`taskcodec.trainer.train`; :func:`epoch_plan` states the
epoch-based params (``epochs``, ``checkpoint_every`` in epochs) in its steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from taskcodec.augment import random_shift_flip, shift_flip_draws
from taskcodec.data.manifest import split_rows
from taskcodec.data.sources import image_rows, memory_budgets, streamed
from taskcodec.data.stored import read_image
from taskcodec.resume import params_fingerprint
from taskcodec.tasks.evaluation import as_model_input, predict_logits, take
from taskcodec.tasks.registry import Task
from taskcodec.trainer import EpochLog, EpochObjective, Optimizers, Plan, Trained, cosine, train

#: ``optimizer`` → the optimizer of a model's parameters under the training params
OPTIMIZERS = {
    "sgd": lambda parameters, params: torch.optim.SGD(parameters, lr=params["lr"], momentum=params["momentum"],
                                                      nesterov=params["nesterov"], weight_decay=params["weight_decay"]),
    "adam": lambda parameters, params: torch.optim.Adam(parameters, lr=params["lr"],
                                                        weight_decay=params["weight_decay"]),
}


def log_fields(task: Task) -> list[str]:
    """The columns of a task model's train_log.csv: one per epoch."""
    return ["epoch", "step", "train_loss", f"train_{task.primary_metric}", "val_loss",
            *[f"val_{name}" for name in task.metric_names], "lr", "elapsed_s"]


@dataclass
class LabeledSet:
    """Model inputs (each N×C×H×W: uint8 images, or float latents such as ŷ and σ̂; a tensor, or rows read when
    indexed: :class:`~taskcodec.data.sources.FileRows`, :class:`~taskcodec.codecs.cache.ShardRows`) and the
    task's targets (:meth:`Task.collate`: a tensor, or a list with one item per sample); ``held``: where the
    inputs are, for the log."""

    inputs: tuple[Any, ...]
    labels: Any
    held: str = ""

    def __len__(self) -> int:
        return len(self.labels)


def labeled_split(rows: list[dict[str, Any]], task: Task, budget_bytes: int | None = None,
                  workers: int = 0) -> LabeledSet:
    """uint8 images of one split's manifest ``rows`` (:func:`~taskcodec.data.manifest.split_rows`) and their
    targets (:meth:`Task.target` of each sample's row and image): held decoded in memory, or read from their files
    when the split would take more than ``budget_bytes`` (:func:`~taskcodec.data.sources.image_rows`, with
    ``workers`` loader processes)."""
    images, held = image_rows([row["path"] for row in rows], budget_bytes, workers)
    if isinstance(images, torch.Tensor):
        targets = task.collate([task.target(row, image.permute(1, 2, 0).numpy()) for row, image in zip(rows, images)])
        return LabeledSet((images,), targets, held)
    return LabeledSet((images,), split_targets(rows, task), held)


def labeled_splits(manifest: Path, task: Task, mem_mb: int | None, workers: int = 0,
                   splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, LabeledSet]:
    """:func:`labeled_split` of each split, sharing a quarter of a job's ``mem_mb`` by their sizes
    (:func:`~taskcodec.data.sources.memory_budgets`), the train split streamed by ``workers`` loader processes
    (the others by the training process); prints where each split's images are."""
    rows = {split: split_rows(manifest, split) for split in splits}
    budgets = memory_budgets(mem_mb, [len(split) for split in rows.values()])
    sets = {split: labeled_split(rows[split], task, budget, workers if split == "train" else 0)
            for split, budget in zip(splits, budgets)}
    for split, data in sets.items():
        print(f"{split} images: {data.held}", flush=True)
    return sets


def split_targets(rows: list[dict[str, Any]], task: Task) -> Any:
    """The task's targets of one split's manifest ``rows`` (:meth:`Task.target` of each; each image decoded for
    it only when the task's targets read the image, ``Task.target_reads_image``)."""
    return task.collate([task.target(row, read_image(row["path"]) if task.target_reads_image else None)
                         for row in rows])


def to_device(targets: Any, device: torch.device) -> Any:
    """A tensor of targets on ``device``; other targets as they are (the task moves them)."""
    return targets.to(device) if isinstance(targets, torch.Tensor) else targets


def task_metrics(task: Task, outputs: torch.Tensor, targets: Any) -> dict[str, float]:
    """Mean loss and the task's metrics (:meth:`Task.summarize`; NaN where undefined) over a set."""
    return {"loss": task.loss(outputs, to_device(targets, outputs.device)).item(), **task.summarize(outputs, targets)}


def epoch_plan(params: dict[str, Any], objective: EpochObjective, keep_best: tuple[str, str]) -> Plan:
    """``epochs`` of ``objective``'s epochs with a cosine decay from ``lr``, validation after every epoch,
    a resume checkpoint every ``checkpoint_every`` epochs, at most ``time_budget_s`` seconds."""
    steps_per_epoch = objective.steps_per_epoch
    return Plan(params["epochs"] * steps_per_epoch, cosine(params["lr"]), steps_per_epoch,
                params["checkpoint_every"] * steps_per_epoch, params["time_budget_s"], keep_best)


def epoch_metrics(trained: Trained) -> dict[str, Any]:
    """The epoch of the kept weights, the epochs, steps and seconds trained, for a stage's ``metrics.json``."""
    return {"best_epoch": trained.best["epoch"], "epochs": trained.history[-1]["epoch"], "steps": trained.step,
            "train_seconds": trained.elapsed_s}


class ClassifierObjective(EpochObjective):
    """The task's loss of its outputs (:meth:`Task.apply`) on shuffled epochs of ``train`` (``batch_size``, at most the set's
    size), each batch shifted by up to ``crop_padding`` and flipped; validation loss and metrics on ``val``."""

    def __init__(self, model: nn.Module, params: dict[str, Any], train: LabeledSet, val: LabeledSet,
                 generator: torch.Generator, device: torch.device, task: Task):
        super().__init__(len(train), params["batch_size"], generator, streamed(train.inputs))
        self.model, self.params, self.train, self.val, self.device = model, params, train, val, device
        self.task = task

    def batch(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        index = self.indices(step)
        inputs = tuple(as_model_input(t[index], self.device) for t in self.train.inputs)
        replay = torch.Generator().set_state(self.generator.get_state())  # the draws random_shift_flip makes next
        draws = shift_flip_draws(len(index), self.params["crop_padding"], replay)
        targets = to_device(self.task.augment(take(self.train.labels, index), draws, self.params["crop_padding"],
                                              inputs[0].shape[-2:]), self.device)
        inputs = random_shift_flip(inputs, self.params["crop_padding"], self.generator)
        outputs = self.task.apply(self.model, inputs, targets)
        score = self.task.summarize(outputs.detach(), targets)[self.task.primary_metric]
        return self.task.loss(outputs, targets), {self.task.primary_metric: score}

    def validate(self) -> dict[str, float]:
        outputs = predict_logits(self.model, self.val.inputs, self.params["batch_size"], self.device, self.task,
                                 self.val.labels)
        return task_metrics(self.task, outputs, self.val.labels)


def train_classifier(
    model: nn.Module,
    params: dict[str, Any],
    train_set: LabeledSet,
    val_set: LabeledSet,
    task: Task,
    device: torch.device,
    resume_path: Path,
    log_path: Path,
    data_id: str = "",
    desc: str = "train",
) -> Trained:
    """Train ``model`` (:meth:`Task.apply` gives its outputs) in place on the ``task``'s loss for ``params["epochs"]``
    epochs or until ``time_budget_s`` seconds of training, then load the best-validation weights.

    Params: ``epochs``, ``batch_size``, ``lr``, ``optimizer`` (:data:`OPTIMIZERS`; SGD if absent), ``momentum``
    and ``nesterov`` (SGD's), ``weight_decay``,
    ``crop_padding`` (pixels of ``inputs``; 0 = flips only), ``time_budget_s``, ``checkpoint_every``
    (epochs) and ``seed``. Every ``checkpoint_every`` epochs the full state goes to ``resume_path``;
    a rerun with the same params and ``data_id`` continues from there. The per-epoch log is written
    to ``log_path``; the result's ``best`` is the row of the kept epoch (best validation value of the
    task's primary metric, ties to the later).
    """
    model.to(device)
    optimizer = OPTIMIZERS[params.get("optimizer", "sgd")](model.parameters(), params)
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])
    objective = ClassifierObjective(model, params, train_set, val_set, generator, device, task)
    plan = epoch_plan(params, objective, (f"val_{task.primary_metric}", "max"))
    return train(model, objective, Optimizers(optimizer), plan, EpochLog(log_fields(task), objective), generator,
                 device, resume_path, params_fingerprint({"data": data_id, **params}), log_path, desc)

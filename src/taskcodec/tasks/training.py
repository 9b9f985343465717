"""Supervised training of a classifier (pixel task model or latent classifier), resumable by epoch.

The recipe is the usual one for residual networks on small images (He et al., "Deep Residual
Learning for Image Recognition", CVPR 2016, §4.2): SGD with Nesterov momentum and weight decay,
random translations (pad, then random crop back to size) and horizontal flips, with a cosine
learning-rate decay over the run. Seed 004 (Gupta et al., "Learning-Based Compression for
Machines", §2.3) augments the compressed-domain inputs ŷ and σ̂ the same way (random crop and
horizontal flip); here the same crop and flip are applied to every input tensor of a sample.
After every epoch the model is validated; the weights of the best validation top-1 epoch are
the result.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from taskcodec import io
from taskcodec.resume import load_resume, params_fingerprint, save_resume
from taskcodec.tasks.evaluation import as_model_input, classification_metrics, predict_logits

LOG_FIELDS = ["epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "elapsed_s"]


@dataclass
class LabeledSet:
    """Model inputs (each N×C×H×W: uint8 images, or float latents such as ŷ and σ̂) and int64 labels."""

    inputs: tuple[torch.Tensor, ...]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_top1: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None


def cosine_lr(base_lr: float, progress: float) -> float:
    """Cosine decay from ``base_lr`` at progress 0 to 0 at progress 1."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def budget_clock(device: torch.device) -> Callable[[], float]:
    """Process CPU time on the CPU (repeatable on a shared machine), wall time on a GPU."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def random_crop_flip(tensors: tuple[torch.Tensor, ...], padding: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The same random translation (replicate-pad by ``padding``, crop back) and horizontal flip of every tensor."""
    count, _, height, width = tensors[0].shape
    flips = (torch.rand(count, generator=generator) < 0.5).view(-1, 1, 1, 1)
    tops = torch.randint(2 * padding + 1, (count,), generator=generator)
    lefts = torch.randint(2 * padding + 1, (count,), generator=generator)
    out = []
    for tensor in tensors:
        device = tensor.device
        if padding > 0:
            padded = F.pad(tensor, (padding,) * 4, mode="replicate")
            rows = (tops[:, None] + torch.arange(height))[:, :, None].to(device)
            cols = (lefts[:, None] + torch.arange(width))[:, None, :].to(device)
            tensor = padded[torch.arange(count, device=device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        out.append(torch.where(flips.to(device), tensor.flip(-1), tensor).contiguous())
    return tuple(out)


def write_log(path: Path, history: list[dict[str, Any]], fields: list[str]) -> None:
    """Write per-epoch rows as CSV, atomically."""
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)


def run_epochs(state: Any, params: dict[str, Any], num_train: int, generator: torch.Generator, device: torch.device,
               optimizer: torch.optim.Optimizer, train_batch: Callable[[torch.Tensor], dict[str, float]],
               end_epoch: Callable[[dict[str, float], float], None], save: Callable[[], None], desc: str) -> None:
    """The epoch loop shared by the classifier trainings: run the epochs left in ``state``.

    Each epoch visits the ``num_train`` items in a random order (``generator``) in batches of
    ``batch_size``, dropping a last partial batch. Before every batch the learning rate of ``optimizer``
    follows :func:`cosine_lr` over the progress of training (in steps, or in the time budget when that
    is further along); ``train_batch(index)`` trains on the items ``index`` and returns the batch's mean
    logged terms. After every epoch ``end_epoch(epoch means of those terms, lr)`` validates and records,
    and every ``checkpoint_every`` epochs ``save()`` writes the resume checkpoint. Training stops after
    ``epochs`` or once ``time_budget_s`` seconds (:func:`budget_clock`) are spent; ``state`` counts
    ``epoch``, ``step`` and ``elapsed_s``.
    """
    batch_size = min(params["batch_size"], num_train)
    steps_per_epoch = num_train // batch_size
    total_steps = params["epochs"] * steps_per_epoch
    budget, clock = params["time_budget_s"], budget_clock(device)
    progress_bar = tqdm(total=total_steps, initial=state.step, desc=desc, mininterval=5.0)
    out_of_time = False
    while state.epoch < params["epochs"] and not out_of_time:
        order = torch.randperm(num_train, generator=generator)
        sums: dict[str, float] = {}
        seen = 0
        for batch in range(steps_per_epoch):
            if budget is not None and state.elapsed_s >= budget:
                out_of_time = True
                break
            started = clock()
            progress = state.step / total_steps if budget is None else max(state.step / total_steps, state.elapsed_s / budget)
            lr = cosine_lr(params["lr"], progress)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[batch * batch_size : (batch + 1) * batch_size]
            terms = train_batch(index)
            state.step += 1
            state.elapsed_s += clock() - started
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value * len(index)
            seen += len(index)
            progress_bar.update(1)
            progress_bar.set_postfix({key: f"{value:.3f}" for key, value in terms.items()}, refresh=False)
        if seen == 0:
            break
        state.epoch += 1
        end_epoch({key: value / seen for key, value in sums.items()}, lr)
        if state.epoch % params["checkpoint_every"] == 0 and not out_of_time:
            save()
    progress_bar.close()


def train_classifier(
    model: nn.Module,
    params: dict[str, Any],
    train: LabeledSet,
    val: LabeledSet,
    device: torch.device,
    resume_path: Path,
    log_path: Path,
    data_id: str = "",
    desc: str = "train",
) -> TrainState:
    """Train ``model`` (``model(*inputs) -> logits``) in place with cross-entropy for ``params["epochs"]``
    epochs or until ``time_budget_s`` seconds of training, then load the best-validation weights.

    Params: ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``nesterov``, ``weight_decay``,
    ``crop_padding`` (pixels of ``inputs``; 0 = flips only), ``time_budget_s``, ``checkpoint_every``
    (epochs) and ``seed``. Every ``checkpoint_every`` epochs the full state goes to ``resume_path``;
    a rerun with the same params and ``data_id`` continues from there. The per-epoch log is written
    to ``log_path``.
    """
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"],
                                nesterov=params["nesterov"], weight_decay=params["weight_decay"])
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])
    fingerprint = params_fingerprint({"data": data_id, **params})
    stateful = {"model": model, "optimizer": optimizer}
    state = load_resume(resume_path, fingerprint, stateful, generator) or TrainState()
    if state.epoch:
        tqdm.write(f"resuming {resume_path} at epoch {state.epoch}")

    def train_batch(index: torch.Tensor) -> dict[str, float]:
        inputs = random_crop_flip(tuple(as_model_input(t[index], device) for t in train.inputs),
                                  params["crop_padding"], generator)
        labels = train.labels[index].to(device)
        logits = model(*inputs)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "top1": (logits.argmax(1) == labels).float().mean().item()}

    def end_epoch(means: dict[str, float], lr: float) -> None:
        val_metrics = classification_metrics(predict_logits(model, val.inputs, params["batch_size"], device), val.labels)
        state.history.append({
            "epoch": state.epoch, "step": state.step, **{f"train_{key}": value for key, value in means.items()},
            **{f"val_{key}": value for key, value in val_metrics.items()}, "lr": lr, "elapsed_s": state.elapsed_s,
        })
        if val_metrics["top1"] >= state.best_val_top1:  # ties go to the later, more annealed epoch
            state.best_epoch, state.best_val_top1 = state.epoch, val_metrics["top1"]
            state.best_state = copy.deepcopy({key: value.detach().cpu() for key, value in model.state_dict().items()})

    run_epochs(state, params, len(train), generator, device, optimizer, train_batch, end_epoch,
               lambda: save_resume(resume_path, fingerprint, stateful, generator, state), desc)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    write_log(log_path, state.history, LOG_FIELDS)
    return state

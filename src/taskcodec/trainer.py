"""The one training loop: codec pretraining and fine-tuning, the task model, the latent and joint classifiers.

A training is a model, an :class:`Objective` (it draws a batch and computes the
loss and the terms to log; it validates), an :class:`Optimizers` set and a
:class:`Plan` (steps, learning-rate schedule, validation, checkpoints, time
budget, which weights to keep). :func:`train` owns everything else:

- the budget clock: the process's CPU time on the CPU (repeatable on a shared
  machine), wall time on a GPU; training stops after ``steps`` or once
  ``time_budget_s`` seconds of steps are spent;
- the learning rate of the network optimizer before every step, from the
  progress of training (in steps, or in the time budget when that is further
  along): :func:`step_drops` (codecs) or :func:`cosine` (classifiers);
- validation every ``val_every`` steps and after the last step, keep-best on a
  validation value (ties go to the later, more annealed weights);
- optionally a roll-back of the weights when the loss spikes (:mod:`taskcodec.spike_guard`);
- the log: rows in ``train_log.csv`` and in the returned history, which the
  stages log to MLflow (:class:`StepLog`: one row per step and per validation;
  :class:`EpochLog`: one row per validation with the means of the training
  terms since the previous one);
- resume (:mod:`taskcodec.resume`): every ``checkpoint_every`` steps, and when
  the process gets SIGTERM (what SLURM sends before it kills a job), the model,
  optimizers, objective, both random-number generators and the progress go to
  the resume checkpoint; after a SIGTERM the process exits with status 143
  without returning, so the stage writes no final output. A rerun with the
  same fingerprint (the science params and the data) continues from there and
  ends with the same weights as an uninterrupted run;
- several processes (:mod:`taskcodec.distributed`, codecs under ``torchrun``): the
  objective's training forward is the DDP-wrapped model, ``model`` itself is
  the unwrapped one (identical in every process: validation, the averaged and
  kept weights); the processes agree on every step's time and on SIGTERM, so
  all stop at the same step, the log has the terms of the global batch, and
  only the main process prints and writes the log.
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm import tqdm

from taskcodec import artifacts, distributed
from taskcodec.resume import load_resume, save_resume
from taskcodec.spike_guard import SpikeGuard
from taskcodec.weight_average import WeightAverage

#: exit status of a training stopped by SIGTERM after saving its resume checkpoint (128 + 15)
TERMINATED = 143


class Objective:
    """What a training optimises: subclasses set ``batch_size`` and implement :meth:`batch` and :meth:`validate`.

    An objective that keeps state between steps (e.g. the current epoch's
    order) returns it from :meth:`state_dict` as tensors and plain types, so
    that a resumed run continues exactly.
    """

    batch_size: int

    def batch(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Draw the batch of ``step`` (0-based) and return (loss to minimise, logged terms other than the loss)."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Validation metrics; the model is in eval mode."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EpochObjective(Objective):
    """An objective over shuffled epochs of ``count`` items in batches of ``batch_size`` (at most ``count``),
    dropping a last partial batch; :meth:`indices` gives a step's items.

    The order of an epoch is drawn from ``generator`` at the epoch's first step
    and is part of the resume state. The epoch's remaining batches are announced
    to each of ``streamed``, the training's rows read from files
    (:meth:`~taskcodec.data.sources.FileRows.expect`), so that its loader
    workers decode them ahead: when the order is drawn, and at the first step
    after a resume.
    """

    def __init__(self, count: int, batch_size: int, generator: torch.Generator, streamed: Sequence[Any] = ()):
        self.count, self.generator, self.streamed = count, generator, list(streamed)
        self.batch_size = min(batch_size, count)
        self.steps_per_epoch = count // self.batch_size
        self.order: torch.Tensor | None = None
        self.announced = False

    def indices(self, step: int) -> torch.Tensor:
        position = step % self.steps_per_epoch
        if position == 0:
            self.order = torch.randperm(self.count, generator=self.generator)
            self.announced = False
        if not self.announced:
            batches = [self.order[k * self.batch_size : (k + 1) * self.batch_size].tolist()
                       for k in range(position, self.steps_per_epoch)]
            for rows in self.streamed:
                rows.expect(batches)
            self.announced = True
        return self.order[position * self.batch_size : (position + 1) * self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.announced = state["order"], False


@dataclass
class Optimizers:
    """The network optimizer (its learning rate follows the plan), gradient clipping of ``clip_parameters``
    to ``clip_max_norm`` (0 = none) and optionally an auxiliary optimizer minimising ``aux_loss()``
    after every step (CompressAI's entropy-bottleneck quantiles)."""

    net: torch.optim.Optimizer
    clip_parameters: list[nn.Parameter] = field(default_factory=list)
    clip_max_norm: float = 0.0
    aux: torch.optim.Optimizer | None = None
    aux_loss: Callable[[], torch.Tensor] | None = None

    def _aux_parameters(self) -> list[nn.Parameter]:
        return [p for group in self.aux.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        if self.aux is None:
            return {"net": self.net.state_dict()}
        # Only the aux optimizer clears the aux gradients (before its own backward), so they are still there
        # when the next step clips ``clip_parameters`` and count in its norm if they are among them (codecs:
        # all parameters): a resumed run needs them to continue exactly.
        return {"net": self.net.state_dict(), "aux": self.aux.state_dict(),
                "aux_grads": [p.grad for p in self._aux_parameters()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if self.aux is not None:
            self.aux.load_state_dict(state["aux"])
            for p, grad in zip(self._aux_parameters(), state["aux_grads"]):
                p.grad = None if grad is None else grad.to(p.device)

    @property
    def lr(self) -> float:
        return self.net.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        for group in self.net.param_groups:
            group["lr"] = lr

    def step(self, loss: torch.Tensor) -> float | None:
        """One update of the network on ``loss`` and of the auxiliary parameters; returns the aux loss."""
        self.net.zero_grad()
        loss.backward()
        if self.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.clip_parameters, self.clip_max_norm)
        self.net.step()
        if self.aux is None:
            return None
        aux_loss = self.aux_loss()
        self.aux.zero_grad()
        aux_loss.backward()
        self.aux.step()
        return aux_loss.item()


def step_drops(lr: float, drop_at: list[float], gamma: float) -> Callable[[float], float]:
    """Schedule: ``lr`` times ``gamma`` for every drop point (fraction of training) already passed."""
    return lambda progress: lr * gamma ** sum(progress >= point for point in drop_at)


def cosine(lr: float) -> Callable[[float], float]:
    """Schedule: cosine decay from ``lr`` at progress 0 to 0 at progress 1."""
    return lambda progress: lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def warmup(fraction: float, schedule: Callable[[float], float]) -> Callable[[float], float]:
    """Schedule: a linear ramp from 0 to ``schedule``'s value over the first ``fraction`` of training, then
    ``schedule`` over the rest, from its own progress 0 (``fraction`` 0 returns ``schedule``)."""
    if fraction <= 0:
        return schedule
    return lambda progress: (schedule(0.0) * progress / fraction if progress < fraction
                             else schedule((progress - fraction) / (1.0 - fraction)))


@dataclass
class Plan:
    """How long a training runs and when it validates and checkpoints, in steps."""

    steps: int
    learning_rate: Callable[[float], float]  # progress of training in [0, 1] → lr of the network optimizer
    val_every: int
    checkpoint_every: int
    time_budget_s: float | None = None
    #: (validation row key, "max" | "min") of the weights to keep; None keeps the last weights
    keep_best: tuple[str, str] | None = None
    #: decay of an exponential moving average of the weights used for validation and kept (None: no average)
    ema_decay: float | None = None
    #: roll back when a step's loss exceeds this many times the recent median (None: never; :mod:`.spike_guard`)
    spike_guard: float | None = None


class StepLog:
    """A row per training step (``split`` train, with the aux loss) and per validation (``split`` val)."""

    def __init__(self, fields: list[str]):
        self.fields = fields

    def train(self, progress: dict[str, Any], terms: dict[str, float], aux_loss: float | None, lr: float) -> None:
        progress["history"].append({"step": progress["step"], "split": "train", **terms,
                                    "aux_loss": math.nan if aux_loss is None else aux_loss, "lr": lr,
                                    "elapsed_s": progress["elapsed_s"]})

    def validation(self, progress: dict[str, Any], metrics: dict[str, float], lr: float) -> dict[str, Any]:
        row = {"step": progress["step"], "split": "val", "aux_loss": math.nan, "lr": lr,
               "elapsed_s": progress["elapsed_s"], **metrics}
        progress["history"].append(row)
        return row


class EpochLog:
    """A row per validation: its ``epoch`` (a partial last epoch counts), the means of the training terms since
    the previous validation (``train_*``), the validation metrics (``val_*``), the learning rate and the time."""

    def __init__(self, fields: list[str], objective: EpochObjective):
        self.fields, self.objective = fields, objective

    def train(self, progress: dict[str, Any], terms: dict[str, float], aux_loss: float | None, lr: float) -> None:
        pending = progress["pending"]
        for key, value in terms.items():
            pending["sums"][key] = pending["sums"].get(key, 0.0) + value * self.objective.batch_size
        pending["seen"] += self.objective.batch_size

    def validation(self, progress: dict[str, Any], metrics: dict[str, float], lr: float) -> dict[str, Any]:
        pending = progress["pending"]
        means = {key: value / pending["seen"] for key, value in pending["sums"].items()}
        progress["pending"] = {"sums": {}, "seen": 0}
        row = {"epoch": math.ceil(progress["step"] / self.objective.steps_per_epoch), "step": progress["step"],
               **{f"train_{key}": value for key, value in means.items()},
               **{f"val_{key}": value for key, value in metrics.items()}, "lr": lr, "elapsed_s": progress["elapsed_s"]}
        progress["history"].append(row)
        return row


@dataclass
class Trained:
    """What :func:`train` did: steps, seconds of training, the log rows, the validation row of the kept
    weights (keep-best trainings; None keeps the last) and the steps whose loss spike rolled the weights back."""

    step: int
    elapsed_s: float
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    rollbacks: list[int] = field(default_factory=list)


def budget_clock(device: torch.device) -> Callable[[], float]:
    """Process CPU time on the CPU (repeatable on a shared machine), wall time on a GPU."""
    return time.process_time if device.type == "cpu" else time.perf_counter


@contextlib.contextmanager
def termination_requests() -> Iterator[Callable[[], bool]]:
    """While the block runs, SIGTERM only sets a flag (read with the yielded function) instead of ending
    the process; outside the main thread, where no handler can be installed, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_log(path: Path, history: list[dict[str, Any]], fields: list[str]) -> None:
    """Write the log rows as CSV, atomically."""
    with artifacts.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)


def train(model: nn.Module, objective: Objective, optimizers: Optimizers, plan: Plan, log: StepLog | EpochLog,
          generator: torch.Generator, device: torch.device, resume_path: Path, fingerprint: str, log_path: Path,
          desc: str) -> Trained:
    """Train ``model`` in place as the module docstring describes; it ends in eval mode with the kept
    weights, and the log is written to ``log_path``. ``generator`` is the one ``objective`` draws from;
    ``fingerprint`` identifies the science params and data a resume checkpoint belongs to."""
    model.train()
    stateful = {"model": model, "optimizers": optimizers, "objective": objective}
    average = WeightAverage(model, plan.ema_decay) if plan.ema_decay is not None else None
    if average is not None:
        stateful["average"] = average
    guard = None if plan.spike_guard is None else SpikeGuard(
        plan.spike_guard, {name: obj for name, obj in stateful.items() if name != "objective"})
    if guard is not None:
        stateful["guard"] = guard
    progress = load_resume(resume_path, fingerprint, stateful, generator) or {
        "step": 0, "elapsed_s": 0.0, "history": [], "pending": {"sums": {}, "seen": 0}, "validated": -1, "best": None,
        "rollbacks": []}
    if progress["step"]:
        distributed.write(f"resuming {resume_path} at step {progress['step']}")

    def save() -> None:
        save_resume(resume_path, fingerprint, stateful, generator, progress)

    def validate() -> None:
        model.eval()
        with average.swapped() if average is not None else contextlib.nullcontext():
            metrics = objective.validate()
            row = log.validation(progress, metrics, optimizers.lr)
            progress["validated"] = progress["step"]
            if plan.keep_best is not None:
                key, mode = plan.keep_best
                best = progress["best"]
                incumbent = best["value"] if best else (-math.inf if mode == "max" else math.inf)
                if (row[key] >= incumbent) if mode == "max" else (row[key] <= incumbent):
                    progress["best"] = {"value": row[key], "row": len(progress["history"]) - 1,
                                        "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        model.train()

    budget, clock = plan.time_budget_s, budget_clock(device)
    progress_bar = tqdm(total=plan.steps, initial=progress["step"], desc=desc, mininterval=5.0,
                        disable=not distributed.is_main())
    with termination_requests() as terminated:
        while progress["step"] < plan.steps and (budget is None or progress["elapsed_s"] < budget):
            if distributed.any_process(terminated()):
                save()
                progress_bar.close()
                distributed.write(f"terminated: saved {resume_path} at step {progress['step']}; rerun to resume")
                raise SystemExit(TERMINATED)
            started = clock()
            fraction = progress["step"] / plan.steps
            lr = plan.learning_rate(fraction if budget is None else max(fraction, progress["elapsed_s"] / budget))
            optimizers.set_lr(lr)
            loss, terms = objective.batch(progress["step"])
            aux_loss = optimizers.step(loss)
            if average is not None:
                average.update()
            progress["step"] += 1
            progress["elapsed_s"] += distributed.job_seconds(clock() - started, device)
            terms = distributed.mean_over_processes({"loss": loss.item(), **terms})
            log.train(progress, terms, aux_loss, lr)
            if guard is not None and (rolled_back := guard.check(progress["step"], terms["loss"])):
                distributed.write(rolled_back)
                progress["rollbacks"].append(progress["step"])
            progress_bar.update(1)
            progress_bar.set_postfix({key: f"{value:.3f}" for key, value in terms.items()}, refresh=False)
            if progress["step"] % plan.val_every == 0:
                validate()
            if progress["step"] % plan.checkpoint_every == 0:
                save()
    progress_bar.close()
    if progress["validated"] != progress["step"]:
        validate()
    best = progress["best"]
    if best is not None:
        model.load_state_dict(best["weights"])
    elif average is not None:
        average.swap()
    model.eval()
    if distributed.is_main():
        write_log(log_path, progress["history"], log.fields)
    return Trained(progress["step"], progress["elapsed_s"], progress["history"],
                   progress["history"][best["row"]] if best is not None else None, progress["rollbacks"])

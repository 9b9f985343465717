"""The one training loop: schedules, logs, keep-best, and SIGTERM / SIGKILL followed by a rerun."""

import math
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import trainer_child
from taskcodec import trainer
from taskcodec.weight_average import WeightAverage

CHILD = Path(__file__).with_name("trainer_child.py")


class Toy(trainer.Objective):
    """Least squares on noise drawn from the generator; validation returns scripted values."""

    batch_size = 2

    def __init__(self, model, generator, scores):
        self.model, self.generator, self.scores = model, generator, list(scores)
        self.validated = []  # the weights at every validation

    def batch(self, step):
        x = torch.randn(self.batch_size, 2, generator=self.generator)
        loss = (self.model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
        return loss, {"x0": x[0, 0].item()}

    def validate(self):
        self.validated.append({k: v.clone() for k, v in self.model.state_dict().items()})
        return {"score": self.scores[len(self.validated) - 1]}


def toy_run(tmp_path, scores, keep_best=None, log=None, steps=8, val_every=2, budget=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    generator = torch.Generator().manual_seed(0)
    objective = Toy(model, generator, scores)
    plan = trainer.Plan(steps, trainer.cosine(0.1), val_every, 4, budget, keep_best)
    log = log or trainer.StepLog(["step", "split", "loss", "x0", "score", "aux_loss", "lr", "elapsed_s"])
    trained = trainer.train(model, objective, trainer.Optimizers(torch.optim.SGD(model.parameters(), lr=0.1)), plan,
                            log, generator, torch.device("cpu"), tmp_path / "resume.pt", "f", tmp_path / "log.csv",
                            "toy")
    return model, objective, trained


def test_schedules():
    drops = trainer.step_drops(1.0, [0.5, 0.75], 0.1)
    assert [drops(p) for p in (0.0, 0.49, 0.5, 0.8)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert trainer.cosine(2.0)(0.0) == 2.0 and trainer.cosine(2.0)(0.5) == pytest.approx(1.0)
    assert trainer.cosine(2.0)(1.5) == pytest.approx(0.0)
    ramped = trainer.warmup(0.2, trainer.cosine(2.0))
    assert [ramped(p) for p in (0.0, 0.1, 0.2, 0.6, 1.0)] == pytest.approx([0.0, 1.0, 2.0, 1.0, 0.0])
    assert trainer.warmup(0.0, drops) is drops


def test_weight_average_is_the_exponential_moving_average_and_swaps_back():
    model = torch.nn.Linear(2, 1)
    average = WeightAverage(model, 0.75)
    expected = None
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        current = [p.detach().clone() for p in model.parameters()]
        expected = current if expected is None else [0.75 * e + 0.25 * c for e, c in zip(expected, current)]
    with average.swapped():
        for p, e in zip(model.parameters(), expected):
            assert torch.allclose(p, e)
    for p, c in zip(model.parameters(), current):
        assert torch.equal(p, c)


def test_validation_and_the_kept_weights_use_the_average(tmp_path):
    def run(ema):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        generator = torch.Generator().manual_seed(0)
        objective = Toy(model, generator, [0.0] * 4)
        raw = []
        original = objective.batch
        objective.batch = lambda step: (raw.append([p.detach().clone() for p in model.parameters()]), original(step))[1]
        plan = trainer.Plan(6, trainer.cosine(0.1), 3, 100, None, None, ema)
        trainer.train(model, objective, trainer.Optimizers(torch.optim.SGD(model.parameters(), lr=0.1)), plan,
                      trainer.StepLog(["step", "split", "loss", "x0", "score", "aux_loss", "lr", "elapsed_s"]),
                      generator, torch.device("cpu"), tmp_path / f"{ema}.pt", "f", tmp_path / f"{ema}.csv", "toy")
        return model, objective

    plain, _ = run(None)
    averaged, objective = run(0.5)
    # the raw trajectory is the same; what validation saw and what is kept is its average
    assert not torch.equal(plain.weight, averaged.weight)
    assert torch.equal(objective.validated[-1]["weight"], averaged.weight)


@pytest.mark.parametrize("mode, scores, best", [("max", [0.1, 0.5, 0.5, 0.2], 2), ("min", [3.0, 1.0, 2.0, 1.0], 3)])
def test_keep_best_takes_the_later_of_equal_validations(tmp_path, mode, scores, best):
    model, objective, trained = toy_run(tmp_path, scores, keep_best=("score", mode))
    assert trained.best == trained.history[[i for i, row in enumerate(trained.history) if row["split"] == "val"][best]]
    for key, value in model.state_dict().items():
        assert torch.equal(value, objective.validated[best][key]), key
    assert not model.training


def test_step_log_has_a_row_per_step_and_validation_and_the_last_weights(tmp_path):
    model, objective, trained = toy_run(tmp_path, [0.0] * 5, steps=7, val_every=3)
    assert [(row["step"], row["split"]) for row in trained.history if row["split"] == "val"] == [(3, "val"), (6, "val"),
                                                                                                (7, "val")]
    assert sum(row["split"] == "train" for row in trained.history) == 7 and trained.best is None
    assert all(math.isnan(row["aux_loss"]) for row in trained.history)  # no auxiliary optimizer
    assert torch.equal(model.weight, objective.validated[-1]["weight"])
    assert len(pd.read_csv(tmp_path / "log.csv")) == 10


def test_epoch_log_averages_the_steps_since_the_last_validation(tmp_path):
    objective = trainer.EpochObjective(5, 2, torch.Generator())  # 2 steps per epoch, a fifth item left out
    log = trainer.EpochLog(["epoch", "step", "train_loss", "train_x0", "val_score", "lr", "elapsed_s"], objective)
    _, _, trained = toy_run(tmp_path, [0.0] * 4, log=log, steps=6, val_every=2)
    rows = trained.history
    assert [(row["epoch"], row["step"]) for row in rows] == [(1, 2), (2, 4), (3, 6)]
    steps = pd.read_csv(tmp_path / "log.csv")
    assert list(steps.columns) == log.fields and len(steps) == 3
    assert all(set(row) == set(log.fields) for row in rows)


class _Announced:
    """Rows read from files, as far as an EpochObjective sees them: what it announced."""

    def __init__(self):
        self.batches = []

    def expect(self, batches):
        self.batches.append(batches)


def test_each_epochs_batches_are_announced_to_streamed_rows_and_the_rest_after_a_resume():
    rows = _Announced()
    objective = trainer.EpochObjective(5, 2, torch.Generator().manual_seed(0), [rows])
    first = [objective.indices(step).tolist() for step in range(2)]
    assert rows.batches == [first]  # once, when the epoch's order is drawn
    second = objective.indices(2).tolist()
    assert len(rows.batches) == 2 and rows.batches[1][0] == second
    resumed_rows = _Announced()
    resumed = trainer.EpochObjective(5, 2, torch.Generator(), [resumed_rows])
    resumed.load_state_dict(objective.state_dict())
    assert resumed.indices(3).tolist() == objective.indices(3).tolist()
    assert resumed_rows.batches == [[rows.batches[1][1]]]  # the epoch's batches from the resumed step on


def test_time_budget_ends_with_a_validation_of_the_partial_interval(tmp_path):
    _, _, trained = toy_run(tmp_path, [0.0] * 10**5, steps=10**6, val_every=10**6, budget=0.2)
    assert 0 < trained.step < 10**6 and trained.elapsed_s >= 0.2
    assert trained.history[-1]["split"] == "val" and trained.history[-1]["step"] == trained.step


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of trainer_child, in this process."""
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    model, trained = trainer_child.run(out)
    torch.set_num_threads(threads)
    return model.state_dict(), pd.read_csv(out / "log.csv").drop(columns="elapsed_s")


def child(out, kill_at=None, signum=signal.SIGKILL):
    """Run trainer_child in ``out``; with ``kill_at``, send ``signum`` once it announces that step.
    Returns (exit status, stdout lines)."""
    with open(out / "stderr.txt", "a") as stderr:
        process = subprocess.Popen([sys.executable, str(CHILD), str(out)], stdout=subprocess.PIPE, stderr=stderr,
                                   text=True)
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if kill_at is not None and line.startswith("step ") and int(line.split()[1]) >= kill_at:
                process.send_signal(signum)
                break
        rest, _ = process.communicate(timeout=300)
    return process.returncode, lines + rest.splitlines()


def assert_same_as(reference, out):
    weights, log = reference
    resumed = torch.load(out / "weights.pt", weights_only=True)
    for key, value in weights.items():
        assert torch.equal(value, resumed[key]), key
    pd.testing.assert_frame_equal(pd.read_csv(out / "log.csv").drop(columns="elapsed_s"), log)


def test_sigterm_saves_a_checkpoint_exits_143_and_a_rerun_ends_identically(tmp_path, reference):
    status, lines = child(tmp_path, kill_at=10, signum=signal.SIGTERM)  # mid-epoch: epoch 3 is steps 9-12
    assert status == trainer.TERMINATED, lines
    saved = torch.load(tmp_path / "resume.pt", weights_only=True)  # plain types and tensors only
    step = saved["progress"]["step"]
    assert 10 <= step < trainer_child.STEPS and f"at step {step};" in lines[-1]
    assert not (tmp_path / "weights.pt").exists() and not (tmp_path / "log.csv").exists()  # no final output

    status, lines = child(tmp_path)
    assert status == 0 and f"resuming {tmp_path / 'resume.pt'} at step {step}" in lines
    assert lines[1] == f"step {step + 1}" and lines[-1] == "done"
    assert_same_as(reference, tmp_path)


def test_sigkill_at_random_points_then_a_rerun_ends_identically(tmp_path, reference):
    kill_points = sorted(random.Random(1).sample(range(2, trainer_child.STEPS - 1), 3))
    resumed = []
    for kill_at in kill_points:
        status, lines = child(tmp_path, kill_at=kill_at)
        assert status == -signal.SIGKILL, lines
        resumed += [line for line in lines if line.startswith("resuming")]
    status, lines = child(tmp_path)
    resumed += [line for line in lines if line.startswith("resuming")]
    assert status == 0 and lines[-1] == "done" and resumed
    assert_same_as(reference, tmp_path)

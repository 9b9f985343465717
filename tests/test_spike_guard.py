"""Rolling a training back when its loss spikes: what is restored, when, and that a calm training is unchanged."""

import math

import torch

from taskcodec import trainer
from taskcodec.spike_guard import SpikeGuard


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def moved(model, optimizer):
    """One SGD-with-momentum step, so that both the weights and the optimizer's state change."""
    optimizer.zero_grad()
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()


def guarded(window=10):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, SpikeGuard(5.0, {"model": model, "optimizer": optimizer}, window=window)


def test_a_spike_restores_the_weights_and_optimizer_of_the_snapshot_one_to_two_windows_back():
    model, optimizer, guard = guarded()
    kept = None
    for step in range(1, 26):
        moved(model, optimizer)
        assert guard.check(step, 1.0 + 0.01 * step) is None
        if step == 10:  # the snapshot of step 10 is the one rolled back to once step 20's follows it
            kept = weights(model), optimizer.state_dict()["state"][0]["momentum_buffer"].clone()
    moved(model, optimizer)
    message = guard.check(26, 6.1)  # 5 x the median of the previous 10 losses (1.205) is 6.025
    assert message is not None and "step 26" in message and "weights of step 10" in message
    assert all(torch.equal(p, k) for p, k in zip(weights(model), kept[0]))
    assert torch.equal(optimizer.state_dict()["state"][0]["momentum_buffer"], kept[1])
    # the snapshot is not aliased by the restored state: training on from it leaves the snapshot intact
    moved(model, optimizer)
    assert guard.check(27, math.nan) is not None  # a loss that is not a number is a spike too
    assert all(torch.equal(p, k) for p, k in zip(weights(model), kept[0]))
    assert torch.equal(optimizer.state_dict()["state"][0]["momentum_buffer"], kept[1])


def test_a_snapshot_taken_during_a_drift_is_not_rolled_back_to_when_the_spike_comes_within_a_window():
    model, optimizer, guard = guarded()
    for step in range(1, 36):
        moved(model, optimizer)
        assert guard.check(step, 1.0 if step < 28 else 4.0) is None  # drifting up from step 28, under the limit
        if step == 20:
            at_20 = weights(model)
    # the snapshot of step 30, taken during the drift, is still a candidate: step 20's is rolled back to
    assert "weights of step 20" in guard.check(36, 100.0)
    assert all(torch.equal(p, k) for p, k in zip(weights(model), at_20))


def test_before_a_whole_window_nothing_is_rolled_back_or_kept_then_the_first_snapshot_is_the_fallback():
    model, optimizer, guard = guarded()
    for step in range(1, 10):
        moved(model, optimizer)
        assert guard.check(step, 1.0) is None
    assert guard.check(10, math.nan) is None and guard.median() is None  # no median yet, and the NaN is not kept
    for step in range(10, 16):
        moved(model, optimizer)
        guard.check(step, 1.0)
        if step == 10:
            at_10 = weights(model)
    assert guard.median() == 1.0
    assert "weights of step 10" in guard.check(16, 1e9)  # no snapshot has outlived a window yet: the first one
    assert all(torch.equal(p, k) for p, k in zip(weights(model), at_10))


def test_a_resumed_guard_rolls_back_as_the_uninterrupted_one(tmp_path):
    model, optimizer, guard = guarded()
    for step in range(1, 26):
        moved(model, optimizer)
        guard.check(step, 1.0)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "guard": guard.state_dict()},
               tmp_path / "resume.pt")
    saved = torch.load(tmp_path / "resume.pt", weights_only=True)
    resumed, resumed_optimizer, resumed_guard = guarded()
    resumed.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed_guard.load_state_dict(saved["guard"])
    assert resumed_guard.median() == guard.median() == 1.0
    for each in (guard, resumed_guard):
        assert "weights of step 10" in each.check(26, 100.0)
    assert all(torch.equal(p, r) for p, r in zip(weights(model), weights(resumed)))


class Spiking(trainer.Objective):
    """Least squares on noise; at the steps in ``spikes`` the targets are a thousandfold (a batch that
    throws the weights far off)."""

    batch_size = 4

    def __init__(self, model, generator, spikes):
        self.model, self.generator, self.spikes = model, generator, spikes

    def batch(self, step):
        x = torch.randn(self.batch_size, 2, generator=self.generator)
        target = x.sum(dim=1, keepdim=True) * (1e3 if step in self.spikes else 1.0)
        return (self.model(x) - target).pow(2).mean() + 0.1, {}

    def validate(self):
        return {}


def run(tmp_path, spikes, spike_guard):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    generator = torch.Generator().manual_seed(0)
    plan = trainer.Plan(250, lambda progress: 0.05, 1000, 1000, spike_guard=spike_guard)
    trained = trainer.train(model, Spiking(model, generator, spikes),
                            trainer.Optimizers(torch.optim.SGD(model.parameters(), lr=0.05)), plan,
                            trainer.StepLog(["step", "split", "loss", "aux_loss", "lr", "elapsed_s"]), generator,
                            torch.device("cpu"), tmp_path / "resume.pt", "f", tmp_path / "log.csv", "toy")
    return weights(model), trained


def test_a_training_without_spikes_is_the_same_with_the_guard(tmp_path):
    reference, _ = run(tmp_path / "plain", set(), None)
    final, trained = run(tmp_path / "run", set(), 10.0)
    assert trained.rollbacks == [] and all(torch.equal(p, r) for p, r in zip(final, reference))


def test_the_trainer_rolls_back_at_a_spiking_step_and_records_it(tmp_path):
    _, plain = run(tmp_path / "plain", {230}, None)
    _, guarded_run = run(tmp_path / "guarded", {230}, 10.0)
    assert plain.rollbacks == [] and guarded_run.rollbacks == [231]  # the 231st step drew batch 230
    plain_losses, losses = ([row["loss"] for row in run.history if row["split"] == "train"]
                            for run in (plain, guarded_run))
    assert max(plain_losses[231:]) > 1e3  # unguarded, the spike's step threw the weights far off
    assert losses[230] > 1e4 and max(losses[231:]) < 1.0  # the spike is logged, the restored weights fit

"""Resume checkpoints restore exactly what was saved, only for the same fingerprint, and load with weights_only."""

import pickle

import torch

from taskcodec import artifacts
from taskcodec.resume import load_resume, params_fingerprint, save_resume


def test_round_trip_restores_weights_optimizer_rngs_and_progress(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    path, fingerprint = tmp_path / "resume.pt", params_fingerprint({"lr": 0.1})
    progress = {"step": 7, "elapsed_s": 1.5, "history": [{"step": 7, "split": "val", "loss": float("nan")}],
                "best": {"value": 0.5, "weights": {"w": torch.ones(2)}}}
    save_resume(path, fingerprint, {"model": model, "optimizer": optimizer}, generator, progress)
    expected = (torch.rand(2, generator=generator), torch.rand(2))

    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    other_generator = torch.Generator().manual_seed(0)
    restored = load_resume(path, fingerprint, {"model": fresh, "optimizer": fresh_optimizer}, other_generator)
    assert restored["step"] == 7 and restored["history"][0]["split"] == "val"
    assert torch.equal(restored["best"]["weights"]["w"], torch.ones(2))
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_optimizer.state_dict()["state"][0]["momentum_buffer"].equal(
        optimizer.state_dict()["state"][0]["momentum_buffer"])
    assert torch.equal(torch.rand(2, generator=other_generator), expected[0])
    assert torch.equal(torch.rand(2), expected[1])
    torch.load(path, weights_only=True)  # tensors and plain types only: no code can run on loading


def test_other_fingerprint_missing_file_or_older_format_restore_nothing(tmp_path):
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    generator = torch.Generator()
    path = tmp_path / "resume.pt"
    assert load_resume(path, "x", {"model": model}, generator) is None
    save_resume(path, params_fingerprint({"a": 1}), {"model": torch.nn.Linear(3, 2)}, generator, {"step": 1})
    assert load_resume(path, params_fingerprint({"a": 2}), {"model": model}, generator) is None
    artifacts.save_checkpoint(path, {"fingerprint": "x", "state_dict": {}})  # written before progress was recorded
    assert load_resume(path, "x", {"model": model}, generator) is None
    assert torch.equal(model.weight, before)


class Progress:
    """Stands for the dataclass older versions pickled into resume.pt."""


def test_a_checkpoint_that_cannot_be_loaded_safely_is_ignored(tmp_path, capsys):
    path = tmp_path / "resume.pt"
    torch.save({"fingerprint": "x", "progress": Progress()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    assert load_resume(path, "x", {"model": model}, torch.Generator()) is None
    assert torch.equal(model.weight, before)
    assert "not resuming, training from the start" in capsys.readouterr().out


def test_fingerprint_ignores_key_order_but_not_values():
    assert params_fingerprint({"a": 1, "b": 2}) == params_fingerprint({"b": 2, "a": 1})
    assert params_fingerprint({"a": 1}) != params_fingerprint({"a": 2})

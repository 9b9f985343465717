"""Atomic outputs (umask modes, stale temporaries) and safe checkpoint loading."""

import os
import pickle
import stat

import pytest
import torch

from taskcodec import artifacts
from taskcodec.errors import UserError


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                       (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    artifacts.write_json(tmp_path / "a.json", {"x": 1})
    artifacts.save_checkpoint(tmp_path / "model.pt", {"w": torch.zeros(2)})
    with artifacts.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "inner.txt").write_text("x")
        (tmp / "sub").mkdir()
    assert _mode(tmp_path / "a.json") == file_mode and _mode(tmp_path / "model.pt") == file_mode
    assert _mode(tmp_path / "out") == dir_mode and _mode(tmp_path / "out" / "sub") == dir_mode
    assert _mode(tmp_path / "out" / "inner.txt") == file_mode


def test_replacing_a_folder_keeps_the_umask_mode(tmp_path, umask):
    umask(0o002)
    for text in ("first", "second"):
        with artifacts.atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f.txt").write_text(text)
    assert (tmp_path / "out" / "f.txt").read_text() == "second"
    assert _mode(tmp_path / "out") == 0o775
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["out"]


def _leave_stale(folder, name):
    """What killed jobs leave behind: a temporary file and folder of ``name`` and an ``.old`` folder."""
    (folder / f".{name}.k3j_9x2a.tmp").write_text("half written")
    (folder / f".{name}.00ff12ab.tmp").mkdir()
    (folder / f".{name}.00ff12ab.tmp" / "part.png").write_bytes(b"x")
    (folder / f".{name}.abcdef12.old").mkdir()


def test_rerun_removes_stale_temporaries_of_its_own_output_only(tmp_path):
    _leave_stale(tmp_path, "out")
    _leave_stale(tmp_path, "model.pt")
    others = [".out.pt.abcdef12.tmp", ".out.abcdef12.tmp.keep", ".outer.abcdef12.tmp", ".out.short.tmp", "out.txt"]
    for name in others:
        (tmp_path / name).write_text("not ours")
    with artifacts.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f.txt").write_text("new")
    assert sorted(entry.name for entry in tmp_path.iterdir() if entry.name.startswith(".out.")) == sorted(
        name for name in others if name.startswith(".out."))
    artifacts.write_text(tmp_path / "model.pt", "new")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(["out", "model.pt", *others])


def test_failed_write_leaves_nothing_and_keeps_the_old_output(tmp_path):
    artifacts.write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), artifacts.atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), artifacts.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("half")
        raise RuntimeError("killed")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old"


def test_checkpoint_round_trip_of_tensors_and_plain_types(tmp_path):
    payload = {"state_dict": {"w": torch.arange(3.0)}, "params": {"lr": 0.1, "name": "x", "steps": [1, 2], "none": None}}
    artifacts.save_checkpoint(tmp_path / "model.pt", payload)
    loaded = artifacts.load_checkpoint(tmp_path / "model.pt")
    assert torch.equal(loaded["state_dict"]["w"], payload["state_dict"]["w"])
    assert loaded["params"] == payload["params"]


class _WritesMarker:
    """Unpickling this runs code: it calls ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, writer):
    marker, path = tmp_path / "marker", tmp_path / "model.pt"
    payload = {"state_dict": {}, "evil": _WritesMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    pickle.loads(pickle.dumps(_WritesMarker(tmp_path / "control")))  # the payload really would write the file
    assert (tmp_path / "control").exists()
    with pytest.raises(UserError) as info:
        artifacts.load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} was not written by taskcodec or holds objects that cannot be "
                              "loaded safely")
    assert "\n" not in message
    assert not marker.exists()
    if writer != "pickle protocol 4":  # protocol 4 frames hide the global behind an unsupported opcode
        assert "(it refers to io.open)" in message


def test_missing_empty_truncated_and_foreign_checkpoints_name_the_path(tmp_path):
    good = tmp_path / "good.pt"
    artifacts.save_checkpoint(good, {"w": torch.zeros(1000)})
    cases = {
        "missing.pt": (None, "does not exist; train it first or fix the path"),
        "empty.pt": (b"", "is empty (0 bytes)"),
        "half.pt": (good.read_bytes()[: good.stat().st_size // 2], "is truncated or not a PyTorch checkpoint"),
        "text.pt": (b"hello, this is no checkpoint", "is truncated or not a PyTorch checkpoint"),
        "image.pt": (b"\x89PNG\r\n\x1a\n" + bytes(40), "was not written by taskcodec"),
    }
    for name, (content, expected) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError) as info:
            artifacts.load_checkpoint(tmp_path / name)
        assert str(info.value).startswith(f"checkpoint {tmp_path / name} {expected}"), str(info.value)
        assert "\n" not in str(info.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match="holds a list, not a taskcodec checkpoint"):
        artifacts.load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(UserError, match="is a folder"):
        artifacts.load_checkpoint(tmp_path)


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        artifacts.read_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(UserError, match="bad.json is not valid JSON"):
        artifacts.read_json(tmp_path / "bad.json")


def test_file_digest(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert artifacts.file_digest(tmp_path / "f", "md5") == "900150983cd24fb0d6963f7d28e17f72"

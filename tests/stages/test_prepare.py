"""The prepare stage end to end, on tiny builtin and folder datasets."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from taskcodec.data.manifest import MANIFEST_COLUMNS, read_manifest, split_images
from taskcodec.errors import UserError
from taskcodec.stages.prepare import main

SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def _builtin_params(**overrides):
    params = {
        "dataset": "builtin",
        "root": None,
        "image_size": 32,
        "split": SPLIT,
        "seed": 0,
        "builtin": {
            "num_images": 24,
            "canvas_size": 48,
            "classes": ["circle", "square", "triangle", "cross", "ring", "star"],
            "object_scale": [0.3, 0.75],
        },
    }
    params.update(overrides)
    return params


def _folder_params(root):
    return {**_builtin_params(), "dataset": "imagefolder", "root": str(root)}


def _run(params, out):
    return main(["--params", json.dumps(params), "--out", str(out)])


def _photo(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_builtin_end_to_end(tmp_path):
    out = tmp_path / "prepared"
    assert _run(_builtin_params(), out) == out
    frame = read_manifest(out / "manifest.csv")
    assert tuple(frame.columns) == MANIFEST_COLUMNS and len(frame) == 24
    assert frame["split"].value_counts().to_dict() == {"train": 12, "val": 6, "test": 6}
    assert json.loads((out / "classes.json").read_text()) == _builtin_params()["builtin"]["classes"]
    summary = json.loads((out / "prepare.json").read_text())
    assert summary["params"] == _builtin_params()
    assert summary["split_counts"] == {"train": 12, "val": 6, "test": 6}
    assert summary["class_counts"]["ring"] == {"train": 2, "val": 1, "test": 1}
    for image_id, path, label in split_images(out / "manifest.csv", "test"):
        with Image.open(path) as img:
            assert img.mode == "RGB" and img.size == (32, 32)
        assert image_id.endswith(summary["params"]["builtin"]["classes"][label])
    assert not [entry for entry in tmp_path.iterdir() if entry.name.startswith(".")]  # no temp folder left


def test_builtin_output_is_reproducible(tmp_path):
    _run(_builtin_params(), tmp_path / "a")
    _run(_builtin_params(), tmp_path / "b")
    for name in ("manifest.csv", "prepare.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    images = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a" / "images").rglob("*.png"))
    assert all((tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes() for rel in images)


def test_imagefolder_end_to_end(tmp_path):
    for name in ("cat", "dog"):
        for i in range(4):
            _photo(tmp_path / "photos" / name / f"{i}.png", (40 + i, 36))
    out = tmp_path / "prepared"
    _run(_folder_params(tmp_path / "photos"), out)
    frame = read_manifest(out / "manifest.csv")
    assert sorted(frame["class_name"]) == ["cat"] * 4 + ["dog"] * 4
    assert set(frame["orig_height"]) == {36}
    assert json.loads((out / "classes.json").read_text()) == ["cat", "dog"]
    with Image.open(out / frame["path"][0]) as img:
        assert img.size == (32, 32)


def test_unlabeled_folder(tmp_path):
    for i in range(5):
        _photo(tmp_path / "photos" / f"{i}.jpg", (33, 40))
    out = tmp_path / "prepared"
    _run(_folder_params(tmp_path / "photos"), out)
    frame = read_manifest(out / "manifest.csv")
    assert set(frame["label"]) == {-1} and set(frame["class_name"]) == {""}
    assert json.loads((out / "classes.json").read_text()) == []


def test_all_unusable_files_are_reported_together(tmp_path):
    for i in range(3):
        _photo(tmp_path / "photos" / f"good{i}.png", (40, 40))
    (tmp_path / "photos" / "broken.png").write_bytes(b"garbage")
    _photo(tmp_path / "photos" / "tiny.png", (8, 8))
    out = tmp_path / "prepared"
    with pytest.raises(UserError) as info:
        _run(_folder_params(tmp_path / "photos"), out)
    message = str(info.value)
    assert message.startswith("2 of 5 images cannot be used") and "broken.png" in message and "tiny.png" in message
    assert not out.exists()


def test_failed_run_keeps_the_previous_output(tmp_path):
    out = tmp_path / "prepared"
    _run(_builtin_params(), out)
    with pytest.raises(UserError):
        _run(_folder_params(tmp_path / "missing"), out)
    assert (out / "manifest.csv").is_file()


@pytest.mark.parametrize("root", [None, "no-such-folder"])
def test_cli_missing_root_is_one_line_and_exit_2(tmp_path, root):
    params = {**_folder_params(tmp_path), "root": root}
    result = subprocess.run(
        [sys.executable, "-m", "taskcodec.stages.prepare", "--params", json.dumps(params), "--out", str(tmp_path / "o")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert ("set prepare.root" if root is None else "no-such-folder") in result.stderr
    assert "Traceback" not in result.stderr

"""The prepare stage end to end, on tiny builtin and folder datasets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from taskcodec.data.manifest import MANIFEST_COLUMNS, read_manifest, split_images, task_classes
from taskcodec.errors import UserError, shown_path
from taskcodec.stages.prepare import main, prepare

SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def _builtin_params(**overrides):
    params = {
        "dataset": "builtin",
        "root": None,
        "image_size": 32,
        "split": SPLIT,
        "seed": 0,
        "on_bad_image": "stop",
        "builtin": {
            "num_images": 24,
            "canvas_size": 48,
            "classes": ["circle", "square", "triangle", "cross", "ring", "star"],
            "object_scale": [0.3, 0.75],
        },
    }
    params.update(overrides)
    return params


def _folder_params(root, **overrides):
    return {**_builtin_params(), "dataset": "imagefolder", "root": str(root), **overrides}


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
    assert summary["num_classes"] == 6 and summary["num_skipped"] == 0 and summary["skipped"] == []
    assert (out / "skipped.csv").read_text() == "source,reason\n"
    assert summary["split_counts"] == {"train": 12, "val": 6, "test": 6}
    assert summary["class_counts"]["ring"] == {"train": 2, "val": 1, "test": 1}
    for image_id, path, label in split_images(out / "manifest.csv", "test"):
        with Image.open(path.file) as img:
            assert img.mode == "RGB" and img.size == (32, 32)
        assert image_id.endswith(summary["params"]["builtin"]["classes"][label])
    assert not [entry for entry in tmp_path.iterdir() if entry.name.startswith(".")]  # no temp folder left
    assert sorted(entry.name for entry in (out / "images").iterdir()) == ["test", "train", "val"]


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
    assert message.endswith("or set prepare.on_bad_image: skip to leave them out")
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
    assert ("prepare.root is null" if root is None else "no-such-folder") in result.stderr
    assert "Traceback" not in result.stderr


def _labeled(root, classes=("cat", "dog"), per_class=4, size=(40, 36)):
    for name in classes:
        for i in range(per_class):
            _photo(root / name / f"{i}.png", size)
    return root


@pytest.mark.parametrize(
    "layout, expected",
    [
        (lambda root: None, r"prepare\.root: image folder .*photos does not exist; fix the path"),
        (lambda root: root.mkdir(), r"prepare\.root: image folder .*photos is empty; add images \(png/jpg"),
        (lambda root: [root.mkdir(), (root / "a.gif").write_bytes(b"GIF89a"), (root / "b.txt").write_text("x")],
         r"photos has no supported images \(png/jpg/jpeg/bmp/tif/tiff/webp\), only 2 other file\(s\) such as 'a\.gif'; "
         r"convert them to PNG"),
        (lambda root: [_labeled(root, ("cat",)), (root / "dog").mkdir(), (root / "dog" / "d.heic").write_bytes(b"x")],
         r"class folder\(s\) .*photos/dog contain no images .*; add images or remove the folder\(s\)"),
    ],
    ids=["missing", "empty", "no-supported-images", "empty-class-folder"],
)
def test_unusable_dataset_folders_are_one_sentence_and_write_nothing(tmp_path, layout, expected):
    layout(tmp_path / "photos")
    with pytest.raises(UserError, match=expected) as info:
        prepare(_folder_params(tmp_path / "photos"), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == (["photos"] if (tmp_path / "photos").exists() else [])


def test_one_class_or_unlabeled_data_is_refused_by_the_task_check(tmp_path):
    prepare(_folder_params(_labeled(tmp_path / "one", ("cat",))), tmp_path / "one-out")
    assert json.loads((tmp_path / "one-out" / "prepare.json").read_text())["num_classes"] == 1
    with pytest.raises(UserError, match=r"has only one class \('cat'\), but a task classifier needs at least two; "
                                        r"add class folders under prepare\.root or remove classification from tasks"):
        task_classes(tmp_path / "one-out" / "manifest.csv")
    for i in range(4):
        _photo(tmp_path / "flat" / f"{i}.png", (40, 40))
    prepare(_folder_params(tmp_path / "flat"), tmp_path / "flat-out")
    with pytest.raises(UserError, match=r"is unlabeled, but the task branch needs class labels.*remove classification from tasks"):
        task_classes(tmp_path / "flat-out" / "manifest.csv")
    prepare(_folder_params(_labeled(tmp_path / "two")), tmp_path / "two-out")
    assert task_classes(tmp_path / "two-out" / "manifest.csv") == ["cat", "dog"]


def test_a_split_left_empty_by_the_ratios_is_refused_before_any_work(tmp_path):
    for i in range(10):
        _photo(tmp_path / "photos" / f"{i}.png", (40, 40))
    params = _folder_params(tmp_path / "photos", split={"train": 0.85, "val": 0.1, "test": 0.05})
    with pytest.raises(UserError, match=r"^prepare\.split\.test = 0\.05 of 10 usable images is 0\.5 image\(s\), which "
                                        r"rounds to an empty test split; raise it to at least 1/10 or use at least 20 "
                                        r"images$"):
        prepare(params, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _bad_files(folder):
    """A zero-byte, a truncated and a corrupt PNG; returns their names."""
    full = folder / "full.png"
    _photo(full, (48, 48))
    (folder / "zero.png").write_bytes(b"")
    (folder / "cut.png").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    corrupt = bytearray(full.read_bytes())
    corrupt[60:200] = bytes(140)
    (folder / "corrupt.png").write_bytes(bytes(corrupt))
    return ["corrupt.png", "cut.png", "zero.png"]


def test_bad_files_stop_the_stage_with_one_sentence_naming_each(tmp_path):
    _labeled(tmp_path / "photos")
    names = _bad_files(tmp_path / "photos" / "cat")
    with pytest.raises(UserError) as info:
        prepare(_folder_params(tmp_path / "photos"), tmp_path / "out")
    message = str(info.value)
    assert message.startswith("3 of 12 images cannot be used: ") and "\n" not in message
    assert "zero.png is empty (0 bytes)" in message and "cut.png is truncated or corrupt" in message
    assert all(name in message for name in names)
    assert not (tmp_path / "out").exists()


def test_bad_files_are_skipped_and_listed(tmp_path, capsys):
    _labeled(tmp_path / "photos")
    names = _bad_files(tmp_path / "photos" / "cat")
    out = prepare(_folder_params(tmp_path / "photos", on_bad_image="skip"), tmp_path / "out")
    frame = read_manifest(out / "manifest.csv")
    assert len(frame) == 9 and not any(name in source for source in frame["source"] for name in names)
    skipped = pd.read_csv(out / "skipped.csv", keep_default_na=False)
    assert [Path(source).name for source in skipped["source"]] == names
    assert skipped["reason"].tolist()[2] == "is empty (0 bytes)"
    summary = json.loads((out / "prepare.json").read_text())
    assert summary["num_skipped"] == 3 and [Path(source).name for source in summary["skipped"]] == names
    assert summary["num_images"] == 9 and sum(summary["split_counts"].values()) == 9
    assert len(list((out / "images").rglob("*.png"))) == 9
    assert "skipped 3 of 12 images" in capsys.readouterr().err


def test_skipping_cannot_empty_a_class_or_the_dataset(tmp_path):
    _labeled(tmp_path / "photos", ("cat",))
    (tmp_path / "photos" / "dog").mkdir()
    (tmp_path / "photos" / "dog" / "d.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"none of the images of class 'dog' can be used \(e\.g\. .*d\.png is empty"):
        prepare(_folder_params(tmp_path / "photos", on_bad_image="skip"), tmp_path / "out")
    for i in range(3):
        (tmp_path / "flat" / f"{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "flat" / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"^3 of 3 images cannot be used: .*; remove or replace the file$"):
        prepare(_folder_params(tmp_path / "flat", on_bad_image="skip"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_on_bad_image_is_checked():
    with pytest.raises(UserError, match="prepare.on_bad_image is 'ignore'; set it to skip or stop"):
        prepare({**_builtin_params(), "on_bad_image": "ignore"}, Path("unused"))


def _odd_mode_images(folder):
    """One 40x36 image per odd mode; returns {file name: expected RGB after prepare}."""
    folder.mkdir(parents=True)
    Image.new("L", (40, 36), 100).save(folder / "gray.png")
    Image.new("RGBA", (40, 36), (0, 0, 0, 128)).save(folder / "rgba.png")
    palette = Image.new("P", (40, 36), 0)
    palette.putpalette([10, 20, 30] + [0] * 765)
    palette.save(folder / "palette.png")
    Image.new("CMYK", (40, 36), (0, 0, 0, 0)).save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((36, 40), 32896, dtype=np.uint16)).save(folder / "gray16.tif")
    return {"gray.png": (100, 100, 100), "rgba.png": (127, 127, 127), "palette.png": (10, 20, 30),
            "cmyk.jpg": (255, 255, 255), "gray16.tif": (128, 128, 128)}


def test_odd_modes_become_8bit_rgb(tmp_path):
    expected = _odd_mode_images(tmp_path / "photos")
    stored = np.zeros((36, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)  # shown rotated 90 degrees clockwise: red on top, blue below
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photos" / "rotated.jpg", exif=exif, quality=95)
    out = prepare(_folder_params(tmp_path / "photos", split={"train": 0.6, "val": 0.2, "test": 0.2}), tmp_path / "out")
    frame = read_manifest(out / "manifest.csv")
    pixels = {}
    for source, relative in zip(frame["source"], frame["path"]):
        with Image.open(out / relative) as img:
            assert img.mode == "RGB" and img.size == (32, 32)
            pixels[Path(source).name] = np.asarray(img).astype(int)
    for name, colour in expected.items():
        assert np.abs(pixels[name] - colour).max() <= 3, name
    rotated = pixels.pop("rotated.jpg")
    assert frame.set_index("source").loc[str(tmp_path / "photos" / "rotated.jpg"), "orig_height"] == 40
    assert (rotated[4, :, 0] > 200).all() and (rotated[4, :, 2] < 60).all()
    assert (rotated[-4, :, 2] > 200).all() and (rotated[-4, :, 0] < 60).all()


def test_too_small_images_are_named_or_skipped(tmp_path):
    _labeled(tmp_path / "photos")
    _photo(tmp_path / "photos" / "dog" / "tiny.png", (40, 20))
    with pytest.raises(UserError, match=r"1 of 9 images cannot be used: .*tiny\.png is 40x20 pixels, smaller than "
                                        r"prepare\.image_size=32 on its shorter side; set a smaller prepare\.image_size "
                                        r"or remove the file, or set prepare\.on_bad_image: skip"):
        prepare(_folder_params(tmp_path / "photos"), tmp_path / "out")
    out = prepare(_folder_params(tmp_path / "photos", on_bad_image="skip"), tmp_path / "out")
    assert pd.read_csv(out / "skipped.csv")["reason"].str.contains("smaller than prepare.image_size").tolist() == [True]


def test_decompression_bomb_sized_images_are_refused_unread(tmp_path, monkeypatch):
    _labeled(tmp_path / "photos", size=(32, 32))
    _photo(tmp_path / "photos" / "cat" / "warned.png", (40, 36))  # over the limit: Pillow only warns
    _photo(tmp_path / "photos" / "dog" / "refused.png", (50, 50))  # over twice the limit: Pillow raises
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1100)
    with pytest.raises(UserError) as info:
        prepare(_folder_params(tmp_path / "photos"), tmp_path / "out")
    message = str(info.value)
    assert message.startswith("2 of 10 images cannot be used: ")
    assert "warned.png has 1,440 pixels, more than the 1,100 Pillow decodes safely (decompression-bomb limit)" in message
    assert "refused.png has 2,500 pixels" in message and "downscale or remove the file" in message


ODD_NAMES = ["with space.png", "日本 語.png", "$(touch pwned);`touch pwned2`'\"&|<>*.png", "comma,semi;colon.png",
             "new\nline.png", "-rf.png", os.fsdecode(b"latin1-\xe9.png")]


def test_odd_file_and_folder_names_through_the_cli(tmp_path):
    root = tmp_path / "my data $(touch pwned) 'q' ü"
    for i, name in enumerate(ODD_NAMES):
        _photo(root / ("class one" if i % 2 else "ünï;`x`") / name, (40, 36))
    out = tmp_path / "out dir; $HOME"
    result = subprocess.run(
        [sys.executable, "-m", "taskcodec.stages.prepare", "--out", str(out),
         "--params", json.dumps(_folder_params(root, split={"train": 0.5, "val": 0.25, "test": 0.25}))],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    frame = read_manifest(out / "manifest.csv")
    assert sorted(frame["source"]) == sorted(shown_path(path) for path in root.rglob("*.png"))
    assert json.loads((out / "classes.json").read_text()) == ["class one", "ünï;`x`"]
    assert all(image_id.isascii() and "/" not in image_id and " " not in image_id for image_id in frame["image_id"])
    assert sum(len(split_images(out / "manifest.csv", split)) for split in ("train", "val", "test")) == len(ODD_NAMES)
    assert not list(tmp_path.rglob("pwned*"))


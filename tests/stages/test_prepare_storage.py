"""prepare.storage (png, tar shards, in place) and prepare's processes: the same rows and pixels every way."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from taskcodec.data.manifest import read_manifest, split_images
from taskcodec.data.registry import Sample
from taskcodec.data.stored import read_image
from taskcodec.errors import UserError
from taskcodec.stages.prepare import _Writing, _written, main, prepare
from test_prepare import _builtin_params, _folder_params, _photo, _run


def _folder_of_photos(root):
    for index, size in enumerate([(40, 34), (33, 50), (32, 32), (64, 40), (45, 45), (38, 60)]):
        _photo(root / ("cats" if index % 2 else "dogs") / f"p{index}.png", size)
    return root


def _pixels(manifest):
    return {image_id: read_image(image) for split in ("train", "val", "test")
            for image_id, image, _ in split_images(manifest, split)}


@pytest.mark.parametrize("storage", ["tar", "in_place"])
def test_every_storage_gives_the_pixels_and_rows_of_png(tmp_path, storage):
    root = _folder_of_photos(tmp_path / "photos")
    png = _run(_folder_params(root, split={"train": 0.5, "val": 0.25, "test": 0.25}), tmp_path / "png")
    other = _run(_folder_params(root, split={"train": 0.5, "val": 0.25, "test": 0.25}, storage=storage,
                                images_per_shard=2), tmp_path / storage)
    expected, stored = read_manifest(png / "manifest.csv"), read_manifest(other / "manifest.csv")
    pd.testing.assert_frame_equal(expected.drop(columns="path"), stored.drop(columns="path"))
    assert _pixels(png / "manifest.csv").keys() == _pixels(other / "manifest.csv").keys()
    for image_id, pixels in _pixels(png / "manifest.csv").items():
        np.testing.assert_array_equal(_pixels(other / "manifest.csv")[image_id], pixels)
    if storage == "tar":  # the train split's 3 images in 2 shards; val's and test's 2 in one each
        assert sorted(path.name for path in (other / "images").iterdir()) == [
            "test-000000.tar", "train-000000.tar", "train-000001.tar", "val-000000.tar"]
    else:  # nothing copied: the manifest names the photos themselves
        assert not (other / "images").exists()
        assert set(stored["path"]) == {f"{path}[32x32]" for path in root.rglob("*.png")}


def test_an_image_indexed_in_place_that_is_damaged_later_is_named_when_read(tmp_path):
    root = _folder_of_photos(tmp_path / "photos")
    out = _run(_folder_params(root, storage="in_place", split={"train": 0.5, "val": 0.25, "test": 0.25}),
               tmp_path / "prepared")
    _, image, _ = split_images(out / "manifest.csv", "test")[0]
    image.file.write_bytes(image.file.read_bytes()[:200])
    with pytest.raises(UserError, match=f"image {image.file} is truncated or corrupt"):
        read_image(image)


def test_storage_choices_are_checked(tmp_path):
    with pytest.raises(UserError, match="prepare.storage = 'zip' is not allowed; use one of 'png', 'tar', 'in_place'"):
        _run(_builtin_params(storage="zip"), tmp_path / "a")
    with pytest.raises(UserError, match="images_per_shard"):
        _run(_builtin_params(storage="tar"), tmp_path / "b")
    with pytest.raises(UserError, match="the builtin dataset does not read its images from files; set prepare.storage to png or tar"):
        _run(_builtin_params(storage="in_place"), tmp_path / "c")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("storage", ["png", "tar", "in_place"])
def test_processes_share_the_images_and_write_what_one_process_writes(tmp_path, storage):
    root = _folder_of_photos(tmp_path / "photos")
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    params = _folder_params(root, on_bad_image="skip", split={"train": 0.5, "val": 0.25, "test": 0.25},
                            storage=storage, images_per_shard=2)
    one = _run(params, tmp_path / "one")
    two = main(["--params", json.dumps(params), "--out", str(tmp_path / "two"), "--threads", "3"])
    for name in ("manifest.csv", "skipped.csv", "classes.json"):
        assert (one / name).read_text() == (two / name).read_text()
    assert "broken.png,is not an image Pillow can read" in (two / "skipped.csv").read_text()
    files = [sorted(path.relative_to(out) for path in out.rglob("*") if path.is_file()) for out in (one, two)]
    assert files[0] == files[1] and all((one / path).read_bytes() == (two / path).read_bytes() for path in files[0])
    with pytest.raises(UserError, match=r"1 of 7 images cannot be used: .*broken\.png is not an image"):
        prepare({**params, "on_bad_image": "stop"}, tmp_path / "three", processes=2)


def test_a_process_of_prepare_that_dies_stops_it_with_one_sentence():
    dying = Sample(image_id="a", label=-1, source="a.png", load=lambda: os._exit(1))  # as the kernel's OOM killer would
    with pytest.raises(UserError, match=r"a process of prepare died \(out of memory\?\); raise "
                                        r"resources.prepare.mem_mb \(shared by its 2 processes\)"):
        list(_written([dying], _Writing(8, None, False), processes=2))

"""Folder datasets: labeled, unlabeled, and the layouts that are refused."""

import pytest
from PIL import Image

from taskcodec.data.imagefolder import folder_images, scan_image_folder
from taskcodec.data.registry import UNLABELED, build_dataset
from taskcodec.errors import UserError


def _image(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (40, 80, 120)).save(path)


def test_labeled_folder(tmp_path):
    _image(tmp_path / "dog" / "b.png")
    _image(tmp_path / "dog" / "a.JPG")
    _image(tmp_path / "cat" / "nested" / "c.png")
    _image(tmp_path / "cat" / ".hidden.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    classes, files = scan_image_folder(tmp_path)
    assert classes == ["cat", "dog"]
    assert [(path.relative_to(tmp_path).as_posix(), label) for path, label in files] == [
        ("cat/nested/c.png", 0),
        ("dog/a.JPG", 1),
        ("dog/b.png", 1),
    ]


def test_flat_folder_is_unlabeled(tmp_path):
    _image(tmp_path / "b.png")
    _image(tmp_path / "a.webp")
    _image(tmp_path / ".DS_Store.png")
    (tmp_path / "empty_subfolder").mkdir()
    classes, files = scan_image_folder(tmp_path)
    assert classes == []
    assert [(path.name, label) for path, label in files] == [("a.webp", UNLABELED), ("b.png", UNLABELED)]


def test_mixed_layout_is_refused(tmp_path):
    _image(tmp_path / "top.png")
    _image(tmp_path / "cat" / "c.png")
    with pytest.raises(UserError, match="mixes"):
        scan_image_folder(tmp_path)


def test_empty_class_folder_is_refused(tmp_path):
    _image(tmp_path / "cat" / "c.png")
    (tmp_path / "dog").mkdir()
    with pytest.raises(UserError, match="dog"):
        scan_image_folder(tmp_path)


def test_missing_not_a_folder_and_empty(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UserError, match="not a folder"):
        scan_image_folder(tmp_path / "file.png")
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".DS_Store").write_text("hidden")
    with pytest.raises(UserError, match=r"empty is empty; add images \(png/jpg/jpeg/bmp/tif/tiff/webp\) or fix"):
        scan_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "sub").mkdir()
    (tmp_path / "empty" / "sub" / "scan.heic").write_bytes(b"x")
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match=r"empty has no supported images \(png/.*\), only 2 other file\(s\) such as "
                                        r"'readme\.txt'; convert them to PNG or fix the path"):
        scan_image_folder(tmp_path / "empty")


def test_dataset_from_params_resolves_relative_root(tmp_path, monkeypatch):
    _image(tmp_path / "photos" / "cat" / "c.png", size=(10, 6))
    monkeypatch.chdir(tmp_path)
    dataset = build_dataset({"dataset": "imagefolder", "root": "photos"})
    (sample,) = dataset.samples()
    assert dataset.classes == ["cat"]
    assert sample.label == 0 and sample.image_id == "000000_cat-c"
    assert sample.source == str(tmp_path / "photos" / "cat" / "c.png")
    assert sample.load().shape == (6, 10, 3)


def test_dataset_errors_name_prepare_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=rf"^prepare\.root: image folder {tmp_path}/photos does not exist; fix the path$"):
        build_dataset({"dataset": "imagefolder", "root": "photos"})


def test_dataset_needs_a_root():
    with pytest.raises(UserError, match="set prepare.root"):
        build_dataset({"dataset": "imagefolder", "root": None})


def test_unknown_dataset_lists_known_names():
    with pytest.raises(UserError, match="builtin, imagefolder"):
        build_dataset({"dataset": "imagenet"})


def test_folder_images_is_recursive_and_sorted(tmp_path):
    _image(tmp_path / "z.png")
    _image(tmp_path / "sub" / "a.png")
    _image(tmp_path / ".cache" / "hidden.png")
    assert [path.relative_to(tmp_path).as_posix() for path in folder_images(tmp_path)] == ["sub/a.png", "z.png"]


def test_folder_images_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        folder_images(tmp_path / "missing")
    with pytest.raises(UserError, match="is empty"):
        folder_images(tmp_path)

"""Tar shards and the StoredImage a manifest cell names: round trips, the WebDataset layout, damage found."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from taskcodec.data.images import UnusableImageError
from taskcodec.data.stored import StoredImage, TarShardWriter, read_image
from taskcodec.errors import UserError


def _png(seed, size=(12, 9)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, format="PNG")
    return pixels, data.getvalue()


def _write(folder, count, per_shard):
    (folder / "images").mkdir(parents=True)
    writer = TarShardWriter(folder / "images", "train", per_shard)
    images = [_png(seed) for seed in range(count)]
    cells = [writer.add(f"{i:06d}.png", data) for i, (_, data) in enumerate(images)]
    writer.close()
    return [pixels for pixels, _ in images], cells


def test_shards_round_trip_through_their_cells(tmp_path):
    pixels, cells = _write(tmp_path, count=5, per_shard=2)
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == [
        "train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert cells[0].startswith("images/train-000000.tar[") and cells[4].startswith("images/train-000002.tar[")
    for expected, cell in zip(pixels, cells):
        image = StoredImage.from_cell(cell, tmp_path)
        assert image.start is not None and str(image) == str(tmp_path / cell)
        np.testing.assert_array_equal(read_image(str(image)), expected)
        np.testing.assert_array_equal(read_image(image), expected)


def test_shards_are_plain_tars_in_the_webdataset_layout_and_reproducible(tmp_path):
    _, cells = _write(tmp_path / "a", count=3, per_shard=10)
    _write(tmp_path / "b", count=3, per_shard=10)
    shard = tmp_path / "a" / "images" / "train-000000.tar"
    with tarfile.open(shard) as tar:
        assert tar.getnames() == ["000000.png", "000001.png", "000002.png"]  # <key>.<extension>, in order
        assert {member.mtime for member in tar.getmembers()} == {0}
        assert [f"images/train-000000.tar[{m.offset_data}:{m.offset_data + m.size}]" for m in tar.getmembers()] == cells
    assert shard.read_bytes() == (tmp_path / "b" / "images" / "train-000000.tar").read_bytes()


def test_a_truncated_shard_and_a_damaged_member_are_one_sentence_errors(tmp_path):
    _, cells = _write(tmp_path, count=2, per_shard=10)
    shard = tmp_path / "images" / "train-000000.tar"
    last = StoredImage.from_cell(cells[1], tmp_path)
    data = bytearray(shard.read_bytes())
    shard.write_bytes(bytes(data[: last.start + 10]))
    with pytest.raises(UnusableImageError, match=r"train-000000\.tar\[\d+:\d+\] is cut short \(10 of \d+ bytes"):
        read_image(last)
    first = StoredImage.from_cell(cells[0], tmp_path)
    data[first.start + 1: first.start + 4] = b"JPG"  # the PNG signature
    shard.write_bytes(bytes(data))
    with pytest.raises(UnusableImageError, match=r"train-000000\.tar\[\d+:\d+\] is not an image Pillow can read"):
        read_image(first)
    shard.unlink()
    with pytest.raises(UnusableImageError, match="train-000000.tar cannot be read"):
        read_image(first)


def test_an_image_indexed_in_place_is_resized_and_cropped_when_read(tmp_path):
    pixels, data = _png(0, size=(40, 30))
    (tmp_path / "photo.png").write_bytes(data)
    image = StoredImage.from_cell(f"{tmp_path / 'photo.png'}[16x16]", tmp_path / "elsewhere")
    assert image == StoredImage(tmp_path / "photo.png", size=16)  # an absolute cell: whatever the manifest's folder
    assert read_image(image).shape == (16, 16, 3)
    np.testing.assert_array_equal(read_image(str(image)), read_image(image))  # an address reads as its image
    np.testing.assert_array_equal(read_image(StoredImage(tmp_path / "photo.png")), pixels)
    with pytest.raises(UnusableImageError, match="smaller than prepare.image_size=64"):
        read_image(StoredImage(tmp_path / "photo.png", size=64))


def test_an_empty_manifest_cell_is_one_sentence(tmp_path):
    with pytest.raises(UserError, match="names an image by an empty path; rerun prepare"):
        StoredImage.from_cell("", tmp_path)

"""load_rgb8 on odd files, and resize_center_crop."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from taskcodec.data.images import UnusableImageError, load_rgb8, resize_center_crop
from taskcodec.errors import UserError


def _png(path, width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> None:
    """Write a PNG by hand: its header fields and (filter byte + pixels) rows as given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def _png16(path, pixels: np.ndarray) -> None:
    """Write a 16-bit grayscale (HxW) or RGB (HxWx3) PNG by hand (Pillow cannot write 16-bit RGB)."""
    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    _png(path, width, height, 16, 2 if pixels.ndim == 3 else 0, rows)


def test_rgb_png_round_trips(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    loaded = load_rgb8(tmp_path / "a.png")
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 7, 3)
    np.testing.assert_array_equal(loaded, pixels)


def test_grayscale_and_bilevel_become_rgb(tmp_path):
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "g.png")[0], [[0, 0, 0], [100, 100, 100], [255, 255, 255]])
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "b.png")[0], [[0, 0, 0], [255, 255, 255]])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "a.png")[0], [[255, 0, 0], [255, 255, 255], [127, 127, 127]])


def test_gray_alpha_is_composited_on_white(tmp_path):
    la = np.array([[[0, 0], [0, 255]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "la.png")[0], [[255, 255, 255], [0, 0, 0]])


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(load_rgb8(tmp_path / "p.png")[0], [[255, 255, 255], [200, 100, 50]])


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (1, 1))
    img.putpalette([10, 20, 30] + [0] * 765)
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "p.png")[0], [[10, 20, 30]])


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    _png16(tmp_path / "g16.png", np.array([[65535, 32896, 0, 257]], dtype=np.uint16))
    np.testing.assert_array_equal(load_rgb8(tmp_path / "g16.png")[0, :, 0], [255, 128, 0, 1])


def test_16bit_rgb_is_scaled(tmp_path):
    _png16(tmp_path / "rgb16.png", np.array([[[65535, 32896, 0]]], dtype=np.uint16))
    np.testing.assert_array_equal(load_rgb8(tmp_path / "rgb16.png")[0, 0], [255, 128, 0])


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    loaded = load_rgb8(tmp_path / "c.jpg")
    assert loaded.shape == (4, 4, 3) and loaded.min() >= 250


def test_float_tiff_in_unit_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "f.tif")[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize("orientation, top_left", [(1, (255, 0, 0)), (3, (0, 0, 255)), (6, (0, 255, 0)),
                                                    (8, (0, 0, 255))])
def test_exif_orientation_is_applied(tmp_path, orientation, top_left):
    stored = np.zeros((2, 4, 3), dtype=np.uint8)
    stored[0, 0], stored[1, 0], stored[:, 3] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation  # 3: rotated 180 degrees, 6: 90 clockwise, 8: 90 counter-clockwise when shown
    img.save(tmp_path / "o.png", exif=exif)
    loaded = load_rgb8(tmp_path / "o.png")
    assert loaded.shape == ((2, 4, 3) if orientation in (1, 3) else (4, 2, 3))
    np.testing.assert_array_equal(loaded[0, 0], top_left)


@pytest.mark.parametrize("name", ["garbage.png", "notes.jpg"])
def test_garbage_bytes_name_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an image" * 10)
    with pytest.raises(UserError, match=name) as info:
        load_rgb8(path)
    assert str(info.value) == (f"image {path} is not an image Pillow can read (unknown format or damaged header); "
                               "remove or replace the file")


def test_empty_file_is_named(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(UnusableImageError, match=r"zero\.jpg is empty \(0 bytes\); remove or replace the file"):
        load_rgb8(tmp_path / "zero.jpg")


@pytest.mark.parametrize("width, height", [(10_000, 9_500), (30_000, 30_000)])  # Pillow warns / raises
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    _png(tmp_path / "bomb.png", width, height, 8, 2, b"\0" * 64)  # a few bytes that claim many pixels
    with pytest.raises(UnusableImageError) as info:
        load_rgb8(tmp_path / "bomb.png")
    assert info.value.reason == (f"has {width * height:,} pixels, more than the {Image.MAX_IMAGE_PIXELS:,} Pillow "
                                 "decodes safely (decompression-bomb limit)")


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    Image.new("RGB", (2, 2)).save(tmp_path / "private.png")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)  # as for a file of another user with mode 0600 (root may read it)
    with pytest.raises(UnusableImageError, match=r"private\.png cannot be read \(permission denied\)"):
        load_rgb8(tmp_path / "private.png")


def test_truncated_png_names_the_file(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UnusableImageError, match=r"cut\.png is truncated or corrupt \(OSError: image file is truncated"):
        load_rgb8(cut)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.png"):
        load_rgb8(tmp_path / "nope.png")


def test_resize_center_crop_landscape_and_portrait():
    landscape = np.zeros((40, 80, 3), dtype=np.uint8)
    landscape[:, 20:60] = 255  # the centre 40x40 is white
    out = resize_center_crop(landscape, 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert out[:, 2:-2].min() >= 250  # the edge columns pick up a little of the black sides
    assert resize_center_crop(np.zeros((90, 30, 3), dtype=np.uint8), 30).shape == (30, 30, 3)


def test_resize_center_crop_exact_size_is_a_crop():
    pixels = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_center_crop(pixels, 32), pixels[:, 8:40])


def test_too_small_image_names_the_path():
    with pytest.raises(UserError, match=r"tiny\.png.*prepare\.image_size"):
        resize_center_crop(np.zeros((10, 50, 3), dtype=np.uint8), 16, path="data/tiny.png")

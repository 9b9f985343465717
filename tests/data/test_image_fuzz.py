"""Bounded fuzzing of image files given to prepare: every damaged file decodes or fails with a sentence."""

import time

import numpy as np
import pytest
from PIL import Image

from taskcodec.data.images import UnusableImageError, load_rgb8

FORMATS = {"png": {}, "jpg": {"quality": 90}, "webp": {"quality": 80}, "tif": {}, "bmp": {}}
MUTATIONS_PER_FORMAT = 100
SECONDS_PER_FILE = 2.0


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip random bytes, truncate, or append random bytes (one of the three)."""
    kind = rng.integers(3)
    if kind == 0:
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), size=rng.integers(1, 9)):
            damaged[position] ^= int(rng.integers(1, 256))
        return bytes(damaged)
    if kind == 1:
        return data[: rng.integers(0, len(data))]
    return data + rng.integers(0, 256, size=rng.integers(1, 512), dtype=np.uint8).tobytes()


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_damaged_images_decode_or_fail_cleanly(tmp_path, extension):
    rng = np.random.default_rng(sorted(FORMATS).index(extension))
    original = tmp_path / f"original.{extension}"
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(original, **FORMATS[extension])
    data = original.read_bytes()
    outcomes = {"decoded": 0, "refused": 0}
    for index in range(MUTATIONS_PER_FORMAT):
        path = tmp_path / f"m{index}.{extension}"
        path.write_bytes(_mutate(data, rng))
        start = time.monotonic()
        try:
            pixels = load_rgb8(path)
        except UnusableImageError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            outcomes["refused"] += 1
        else:
            assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
            outcomes["decoded"] += 1
        assert time.monotonic() - start < SECONDS_PER_FILE, path
    assert outcomes["refused"] > 0, outcomes  # the damage is real

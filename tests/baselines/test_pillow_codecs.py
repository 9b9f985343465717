"""Round-trip tests for the Pillow-based classical codecs (JPEG, WebP, AVIF)."""

import numpy as np
import pytest
from PIL import features

from taskcodec.baselines import get_classical
from taskcodec.baselines.pillow_codecs import PillowCodec
from taskcodec.metrics import psnr

# name: (low quality, high quality, minimum PSNR in dB at high quality). The
# first three subsample chroma 4:2:0, which caps PSNR near 33-35 dB on the synthetic
# colour edges; a channel swap or misalignment would fall far below 31 dB.
SWEEPS = {"jpeg": (5, 95, 31.0), "webp": (0, 90, 31.0), "avif": (5, 90, 31.0), "avif444": (5, 90, 31.0)}


def synthetic_image(height: int, width: int) -> np.ndarray:
    """Smooth gradients plus sharp edges and mild noise, deterministic."""
    rng = np.random.default_rng(height * 1000 + width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 120 + 80 * np.sin(x / 6.0) * np.cos(y / 9.0)
    green = 40 + 170 * x / width
    blue = np.where((x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 3) ** 2, 190.0, 70.0)
    image = np.stack([red, green, 0.7 * blue + 0.3 * green], axis=-1) + rng.normal(0, 2, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(params=sorted(SWEEPS))
def codec(request):
    codec = get_classical(request.param)
    reason = codec.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return codec


def test_every_pillow_codec_has_a_sweep():
    from taskcodec.baselines import CLASSICAL_CODECS

    assert {name for name, cls in CLASSICAL_CODECS.items() if issubclass(cls, PillowCodec)} == set(SWEEPS)


@pytest.mark.parametrize("shape", [(64, 64), (33, 47)])
def test_round_trip_shape_size_and_quality(codec, shape):
    image = synthetic_image(*shape)
    low, high, min_psnr = SWEEPS[codec.name]
    small, large = codec.encode(image, low), codec.encode(image, high)
    assert isinstance(large, bytes)
    assert len(small) < len(large)
    for data in (small, large):
        decoded = codec.decode(data)
        assert decoded.shape == image.shape
        assert decoded.dtype == np.uint8
    assert psnr(image, codec.decode(large)) > min_psnr
    assert psnr(image, codec.decode(small)) < psnr(image, codec.decode(large))


def test_encoding_is_deterministic(codec):
    image = synthetic_image(64, 64)
    assert codec.encode(image, 50) == codec.encode(image, 50)


def test_default_batch_methods_equal_single_calls_in_order(codec):
    images = [synthetic_image(64, 64), synthetic_image(33, 47), synthetic_image(48, 20), synthetic_image(64, 64)[::-1]]
    batch = codec.encode_many(images, 50)
    assert batch == [codec.encode(image, 50) for image in images]
    decoded = codec.decode_many(batch)
    assert [image.shape for image in decoded] == [image.shape for image in images]
    for data, image in zip(batch, decoded):
        np.testing.assert_array_equal(image, codec.decode(data))


def test_bad_inputs_are_rejected(codec):
    from taskcodec.errors import UserError

    with pytest.raises(UserError, match="quality"):
        codec.encode(synthetic_image(16, 16), 101)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        codec.encode(synthetic_image(16, 16).astype(np.float32), 50)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_unavailable_reason_when_pillow_lacks_the_plugin(monkeypatch, name):
    monkeypatch.setattr(features, "check", lambda feature: False)
    reason = get_classical(name).unavailable_reason()
    assert reason is not None and "Pillow" in reason and reason.endswith(".")


def test_avif_444_keeps_the_chroma_that_420_averages_away():
    image = synthetic_image(64, 64)
    image[:, ::2, 0] = 255  # one-pixel red stripes: 4:2:0 chroma averages them out
    subsampled, full = get_classical("avif"), get_classical("avif444")
    if full.unavailable_reason() is not None:
        pytest.skip(full.unavailable_reason())
    assert psnr(image, full.decode(full.encode(image, 90))) > psnr(image, subsampled.decode(subsampled.encode(image, 90))) + 3

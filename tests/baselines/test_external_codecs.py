"""Tests for the registry and the external-tool codecs (HEVC via ffmpeg, JPEG XL)."""

import shutil

import numpy as np
import pytest

from taskcodec.baselines import CLASSICAL_CODECS, ClassicalCodec, get_classical
from taskcodec.baselines.pillow_codecs import PillowCodec
from taskcodec.errors import UserError
from taskcodec.metrics import psnr

# name: (low quality, high quality, minimum PSNR in dB at high quality)
SWEEPS = {"hevc": (45, 10, 38.0), "jpegxl": (10, 95, 38.0)}


def natural_ish_image(height: int, width: int) -> np.ndarray:
    """Smooth shading, a textured region, sharp edges and mild noise, deterministic."""
    rng = np.random.default_rng(height * 1000 + width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    shading = 90 + 60 * np.sin(x / 11.0 + y / 17.0)
    texture = 25 * np.sin(x / 2.5) * np.sin(y / 3.0) * (x > width / 2)
    edge = np.where(y > 0.6 * height, 70.0, 0.0)
    image = np.stack([shading + texture + edge, 0.8 * shading + edge, 200 - 0.5 * shading - texture], axis=-1)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(params=sorted(SWEEPS))
def codec(request):
    codec = get_classical(request.param)
    reason = codec.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return codec


def test_registry_holds_every_codec_of_params_yaml():
    assert set(CLASSICAL_CODECS) == {"jpeg", "webp", "avif", "hevc", "jpegxl"}
    for name, cls in CLASSICAL_CODECS.items():
        assert issubclass(cls, ClassicalCodec) and cls.name == name and cls.quality_knob
    assert {name for name, cls in CLASSICAL_CODECS.items() if not issubclass(cls, PillowCodec)} == set(SWEEPS)


def test_unknown_codec_is_a_user_error_listing_known_names():
    with pytest.raises(UserError, match="jpeg2000.*avif, hevc, jpeg, jpegxl, webp"):
        get_classical("jpeg2000")


@pytest.mark.parametrize("shape", [(64, 64), (33, 47)])
def test_round_trip_shape_size_and_quality(codec, shape):
    image = natural_ish_image(*shape)
    low, high, min_psnr = SWEEPS[codec.name]
    small, large = codec.encode(image, low), codec.encode(image, high)
    assert len(small) < len(large)
    for data in (small, large):
        decoded = codec.decode(data)
        assert decoded.shape == image.shape
        assert decoded.dtype == np.uint8
    assert psnr(image, codec.decode(large)) >= min_psnr
    assert psnr(image, codec.decode(small)) < psnr(image, codec.decode(large))


def test_hevc_bitstream_is_bare_annex_b_without_encoder_info_sei():
    codec = get_classical("hevc")
    reason = codec.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    data = codec.encode(natural_ish_image(64, 64), 30)
    assert data.startswith(b"\x00\x00\x00\x01") or data.startswith(b"\x00\x00\x01")
    assert b"x265" not in data


def test_quality_out_of_range_is_a_user_error(codec):
    _, high = codec.quality_range
    with pytest.raises(UserError, match="quality"):
        codec.encode(natural_ish_image(16, 16), high + 1)


def test_corrupt_bitstream_raises_runtime_error_with_tool_output(codec):
    with pytest.raises(RuntimeError, match=r"exit status"):
        codec.decode(b"definitely not a bitstream")


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_unavailable_reason_with_empty_path(monkeypatch, tmp_path, name):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = get_classical(name).unavailable_reason()
    assert reason is not None and reason.endswith(".")
    assert ("ffmpeg" if name == "hevc" else "libjxl-tools") in reason


def test_hevc_reason_when_ffmpeg_lacks_libx265(monkeypatch, tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' V..... libx264   H.264'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("ffmpeg") == str(fake)
    reason = get_classical("hevc").unavailable_reason()
    assert reason is not None and "libx265" in reason

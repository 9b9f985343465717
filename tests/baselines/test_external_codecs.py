"""Tests for the registry and the external-tool codecs (HEVC via ffmpeg, JPEG XL)."""

import shutil

import numpy as np
import pytest

from taskcodec.baselines import CLASSICAL_CODECS, ClassicalCodec, get_classical
from taskcodec.baselines.hevc import split_access_units
from taskcodec.baselines.pillow_codecs import PillowCodec
from taskcodec.errors import UserError
from taskcodec.metrics import psnr

# name: (low quality, high quality, minimum PSNR in dB at high quality)
SWEEPS = {"hevc": (45, 10, 38.0), "jpegxl": (10, 95, 38.0)}


def natural_ish_image(height: int, width: int, variant: int = 0) -> np.ndarray:
    """Smooth shading, a textured region, sharp edges and mild noise, deterministic.

    Different ``variant`` values give different images of the same size.
    """
    rng = np.random.default_rng(height * 1000 + width + 1_000_000 * variant)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 13.0 * variant
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
    assert set(CLASSICAL_CODECS) == {"jpeg", "webp", "avif", "avif444", "hevc", "jpegxl"}
    for name, cls in CLASSICAL_CODECS.items():
        assert issubclass(cls, ClassicalCodec) and cls.name == name and cls.quality_knob
    assert {name for name, cls in CLASSICAL_CODECS.items() if not issubclass(cls, PillowCodec)} == set(SWEEPS)


def test_unknown_codec_is_a_user_error_listing_known_names():
    with pytest.raises(UserError, match="jpeg2000.*avif, avif444, hevc, jpeg, jpegxl, webp"):
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


@pytest.fixture
def hevc():
    codec = get_classical("hevc")
    reason = codec.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return codec


def nal_types(stream: bytes) -> list[int]:
    """nal_unit_type of each NAL unit of an Annex-B stream (scanning for 00 00 01 start codes)."""
    types, position = [], stream.find(b"\x00\x00\x01")
    while position != -1:
        types.append((stream[position + 3] >> 1) & 0x3F)
        position = stream.find(b"\x00\x00\x01", position + 3)
    return types


def differing_bits(a: bytes, b: bytes) -> int:
    """Number of bits in which two equally long byte strings differ."""
    xor = np.frombuffer(a, dtype=np.uint8) ^ np.frombuffer(b, dtype=np.uint8)
    return int(np.unpackbits(xor).sum())


def test_batch_of_mixed_sizes_keeps_order_and_matches_single_coding(codec):
    shapes = [(64, 64), (33, 47), (64, 64), (40, 24), (33, 47), (64, 64)]
    images = [natural_ish_image(*shape, variant=index) for index, shape in enumerate(shapes)]
    quality = SWEEPS[codec.name][1]
    batch = codec.encode_many(images, quality)
    singles = [codec.encode(image, quality) for image in images]
    assert [len(data) for data in batch] == [len(data) for data in singles]
    decoded = codec.decode_many(batch)
    assert [image.shape for image in decoded] == [image.shape for image in images]
    for image, batch_decoded, single in zip(images, decoded, singles):
        np.testing.assert_array_equal(batch_decoded, codec.decode(single))
        assert psnr(image, batch_decoded) >= SWEEPS[codec.name][2]
    assert codec.encode_many([], quality) == [] and codec.decode_many([]) == []


def test_hevc_access_units_of_a_batch_are_standalone_single_image_bitstreams(hevc):
    images = [natural_ish_image(64, 64, variant) for variant in range(8)]
    batch = hevc.encode_many(images, 30)
    decoded = hevc.decode_many(batch)
    for image, unit, batch_decoded in zip(images, batch, decoded):
        # x265 with info=0 sends no access unit delimiter and no SEI: VPS, SPS, PPS, one IDR slice.
        assert unit.startswith(b"\x00\x00\x00\x01")
        assert nal_types(unit) in ([32, 33, 34, 19], [32, 33, 34, 20])
        np.testing.assert_array_equal(hevc.decode(unit), batch_decoded)
        single = hevc.encode(image, 30)
        # Same size; the only difference x265 makes between the n-th frame of a sequence and a lone
        # image is slice_loop_filter_across_slices_enabled_flag, which it sets from the picture order
        # count (bit POC % 31 of 0x5f4e4a53) and which cannot matter with one slice per picture.
        assert len(unit) == len(single)
        assert differing_bits(unit, single) <= 1
        np.testing.assert_array_equal(hevc.decode(single), batch_decoded)


def test_hevc_decode_many_mixes_qualities_and_sizes(hevc):
    small, large = natural_ish_image(33, 47), natural_ish_image(64, 64, 1)
    data = [*hevc.encode_many([small, large], 45), *hevc.encode_many([large, small], 20)]
    decoded = hevc.decode_many(data)
    assert [image.shape for image in decoded] == [small.shape, large.shape, large.shape, small.shape]
    for item, image in zip(data, decoded):
        np.testing.assert_array_equal(hevc.decode(item), image)


def test_split_access_units_keeps_delimiters_and_sei_with_their_picture():
    def nal(nal_type: int, payload: bytes = b"\xaa", long_start: bool = False) -> bytes:
        return (b"\x00" if long_start else b"") + b"\x00\x00\x01" + bytes([nal_type << 1, 1]) + payload

    # AUD, VPS, SPS, PPS, prefix SEI, two slice segments of an IDR picture
    first = nal(35, long_start=True) + nal(32, long_start=True) + nal(33) + nal(34) + nal(39) + nal(19) + nal(19)
    # prefix SEI before the VPS, suffix SEI after the slice
    second = nal(39, long_start=True) + nal(32) + nal(33) + nal(34) + nal(20) + nal(40)
    third = nal(32, long_start=True) + nal(33) + nal(34) + nal(20)
    assert split_access_units(first + second + third) == [first, second, third]
    assert split_access_units(third) == [third]


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

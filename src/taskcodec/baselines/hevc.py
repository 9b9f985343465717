"""HEVC intra coding (x265 through ffmpeg) as a still-image baseline."""

import functools
import re
import shutil
from collections.abc import Hashable

import numpy as np

from taskcodec.baselines.registry import ClassicalCodec, register_classical, run_tool

_TIMEOUT_S = 300.0
"""Time allowed per image; a batch call gets this much per frame."""
_COLOUR_TAGS = [
    "-color_range", "pc", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "iec61966-2-1",
]  # fmt: skip
_START_CODE = b"\x00\x00\x01"
_VPS = 32
_AU_PREFIX_TYPES = frozenset({32, 33, 34, 35, 39})
"""NAL unit types that open a new access unit when they follow a picture's
slices: VPS, SPS, PPS, access unit delimiter and prefix SEI (H.265 7.4.2.4.4)."""
_PPM_HEADER = re.compile(rb"P6\n(\d+) (\d+)\n255\n")


@functools.cache
def _has_libx265(ffmpeg: str) -> bool:
    """Whether the ffmpeg binary at this path lists the libx265 encoder."""
    try:
        encoders = run_tool([ffmpeg, "-hide_banner", "-encoders"], timeout=30.0)
    except RuntimeError:
        return False
    return b"libx265" in encoders


def _nal_units(stream: bytes) -> list[tuple[int, int]]:
    """(start, nal_unit_type) of each NAL unit of an Annex-B byte stream.

    ``start`` is where the unit's start code begins, including the extra
    ``zero_byte`` of a four-byte ``00 00 00 01`` start code.
    """
    units = []
    position = stream.find(_START_CODE)
    while position != -1 and position + 3 < len(stream):
        start = position - 1 if position > 0 and stream[position - 1] == 0 else position
        units.append((start, (stream[position + 3] >> 1) & 0x3F))
        position = stream.find(_START_CODE, position + 3)
    return units


def split_access_units(stream: bytes) -> list[bytes]:
    """Split an Annex-B HEVC byte stream into its access units (pictures).

    A new access unit starts at the first VPS, SPS, PPS, access unit
    delimiter or prefix SEI after a slice (VCL NAL unit, types 0–31), so
    delimiters and SEI messages sent before a picture's parameter sets stay
    with that picture. Bytes before the first NAL unit belong to the first
    access unit. For x265 output with ``repeat-headers=1`` and ``info=0``
    every access unit is ``VPS SPS PPS slice`` and the split falls at each VPS.
    """
    starts = [0]
    seen_slice = False
    for start, nal_type in _nal_units(stream):
        if seen_slice and nal_type in _AU_PREFIX_TYPES:
            starts.append(start)
            seen_slice = False
        seen_slice = seen_slice or nal_type < 32
    return [stream[begin:end] for begin, end in zip(starts, starts[1:] + [len(stream)])]


def _parse_ppm_frames(data: bytes) -> list[np.ndarray]:
    """The RGB frames of a concatenation of binary PPMs as written by ffmpeg's ``ppm`` encoder."""
    frames = []
    offset = 0
    while offset < len(data):
        header = _PPM_HEADER.match(data, offset)
        if header is None:
            raise RuntimeError(f"ffmpeg wrote something other than a binary PPM frame at byte {offset}")
        width, height = int(header.group(1)), int(header.group(2))
        offset = header.end() + width * height * 3
        if offset > len(data):
            raise RuntimeError("ffmpeg wrote a truncated PPM frame")
        pixels = np.frombuffer(data, dtype=np.uint8, count=width * height * 3, offset=header.end())
        frames.append(pixels.reshape(height, width, 3).copy())
    return frames


def _groups(keys: list[Hashable]) -> dict[Hashable, list[int]]:
    """Indices of ``keys`` grouped by equal key, groups in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return groups


@register_classical("hevc")
class HevcCodec(ClassicalCodec):
    """HEVC (H.265) intra, one frame per image, via ``ffmpeg`` with libx265.

    Encoding: raw RGB24 on stdin is converted by ffmpeg's ``scale`` filter
    with the BT.709 matrix to full-range ``yuv444p`` (tagged accordingly in
    the VUI), then coded with ``-c:v libx265 -preset medium -x265-params
    qp=Q:keyint=1:repeat-headers=1:info=0:log-level=error`` into a raw
    Annex-B ``-f hevc`` stream. ``info=0`` drops x265's ~2 KB "encoder
    settings" SEI text, which would otherwise dominate the size of small
    images. Decoding applies the same matrix and range explicitly and returns
    RGB24.

    The bytes of an image are exactly its HEVC bitstream (VPS/SPS/PPS headers
    included), with no extra container or size header: x265 codes odd sizes
    itself by padding to its coding-block grid and signalling a conformance
    window, so the decoder outputs the original width and height.

    :meth:`encode_many` starts ffmpeg once per image size: the images go in
    as the frames of one all-intra sequence (``keyint=1``: every frame is an
    IDR picture coded at the constant QP, independent of the others) and
    ``repeat-headers=1`` puts the parameter sets in front of every frame, so
    each access unit of the output is the standalone bitstream of its image.
    :meth:`decode_many` decodes bitstreams with identical parameter sets
    (same size, same settings) in one ffmpeg call as one sequence.

    A frame's access unit has the same size and decodes to the same pixels as
    :meth:`encode` of that image alone, and is byte-identical to it except
    possibly for one bit: x265 sets each slice header's
    ``slice_loop_filter_across_slices_enabled_flag`` to bit ``POC % 31`` of
    the constant ``0x5f4e4a53`` (``SLFASE_CONSTANT``), and the picture order
    count keeps running over the frames of a sequence while a lone image is
    always POC 0. With one slice per picture there is no slice boundary to
    filter across, so the flag does not affect decoding. Being a fixed 1-bit
    field it keeps the size, unless flipping it made an emulation prevention
    byte appear or vanish; the tests check that sizes match.
    """

    quality_knob = "x265 QP 0–51, lower is better"
    quality_range = (0, 51)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            return "ffmpeg is not on PATH; install the Debian package ffmpeg (which is built with libx265)."
        if not _has_libx265(ffmpeg):
            return (
                f"{ffmpeg} has no libx265 encoder; install an ffmpeg built with "
                "--enable-libx265 (e.g. the Debian package ffmpeg)."
            )
        return None

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        return self.encode_many([image], quality)[0]

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_many([data])[0]

    def encode_many(self, images: list[np.ndarray], quality: int) -> list[bytes]:
        for image in images:
            self.check_input(image, quality)
        encoded: list[bytes] = [b""] * len(images)
        for indices in _groups([image.shape for image in images]).values():
            frames = [images[index] for index in indices]
            for index, data in zip(indices, self._encode_sequence(frames, int(quality))):
                encoded[index] = data
        return encoded

    def decode_many(self, data: list[bytes]) -> list[np.ndarray]:
        # The bytes before the first slice are the parameter sets; equal ones
        # mean equal picture size and format, so the streams concatenate into
        # one valid sequence. Anything else is decoded in its own call.
        decoded: list[np.ndarray] = [np.empty(0, dtype=np.uint8)] * len(data)
        headers = []
        for item in data:
            first_slice = next((start for start, nal_type in _nal_units(item) if nal_type < 32), len(item))
            headers.append(item[:first_slice])
        for indices in _groups(headers).values():
            frames = self._decode_sequence(b"".join(data[index] for index in indices), len(indices))
            for index, frame in zip(indices, frames):
                decoded[index] = frame
        return decoded

    def _encode_sequence(self, frames: list[np.ndarray], quality: int) -> list[bytes]:
        """One ffmpeg run coding equally sized frames; the standalone bitstream of each."""
        height, width, _ = frames[0].shape
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-i", "-",
            "-vf", "scale=out_color_matrix=bt709:out_range=full,format=yuv444p", *_COLOUR_TAGS,
            "-c:v", "libx265", "-preset", "medium",
            "-x265-params", f"qp={quality}:keyint=1:repeat-headers=1:info=0:log-level=error",
            "-frames:v", str(len(frames)), "-f", "hevc", "-",
        ]  # fmt: skip
        # ffmpeg's libx265 wrapper already repeats the headers for a raw stream, which has no
        # global header; repeat-headers=1 states it because splitting into standalone images relies on it.
        raw = b"".join(np.ascontiguousarray(frame).tobytes() for frame in frames)
        stream = run_tool(command, stdin=raw, timeout=_TIMEOUT_S * len(frames))
        units = split_access_units(stream)
        has_vps = [any(nal_type == _VPS for _, nal_type in _nal_units(unit)) for unit in units]
        if len(units) != len(frames) or not all(has_vps):
            raise RuntimeError(
                f"x265 coded {len(frames)} frames of {width}x{height} into {len(units)} access units, "
                "expected one per frame, each starting with its own VPS/SPS/PPS"
            )
        return units

    def _decode_sequence(self, stream: bytes, count: int) -> list[np.ndarray]:
        """One ffmpeg run decoding ``count`` concatenated pictures to RGB24 frames."""
        # A PPM frame is raw RGB24 behind a tiny text header giving the size.
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "hevc", "-i", "-",
            "-vf", "scale=in_color_matrix=bt709:in_range=full,format=rgb24",
            "-f", "image2pipe", "-c:v", "ppm", "-",
        ]  # fmt: skip
        frames = _parse_ppm_frames(run_tool(command, stdin=stream, timeout=_TIMEOUT_S * count))
        if len(frames) != count:
            raise RuntimeError(f"ffmpeg decoded {len(frames)} pictures from {count} HEVC bitstreams")
        return frames

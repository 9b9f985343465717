"""HEVC intra coding (x265 through ffmpeg) as a still-image baseline."""

import functools
import io
import shutil

import numpy as np
from PIL import Image

from taskcodec.baselines.registry import ClassicalCodec, register_classical, run_tool

_TIMEOUT_S = 300.0
_COLOUR_TAGS = [
    "-color_range", "pc", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "iec61966-2-1",
]  # fmt: skip


@functools.cache
def _has_libx265(ffmpeg: str) -> bool:
    """Whether the ffmpeg binary at this path lists the libx265 encoder."""
    try:
        encoders = run_tool([ffmpeg, "-hide_banner", "-encoders"], timeout=30.0)
    except RuntimeError:
        return False
    return b"libx265" in encoders


@register_classical("hevc")
class HevcCodec(ClassicalCodec):
    """HEVC (H.265) intra, one frame, via ``ffmpeg`` with libx265.

    Encoding: raw RGB24 on stdin is converted by ffmpeg's ``scale`` filter
    with the BT.709 matrix to full-range ``yuv444p`` (tagged accordingly in
    the VUI), then coded with ``-c:v libx265 -preset medium -x265-params
    qp=Q:keyint=1:info=0:log-level=error`` into a raw Annex-B ``-f hevc``
    stream. ``info=0`` drops x265's ~2 KB "encoder settings" SEI text, which
    would otherwise dominate the size of small images. Decoding applies the
    same matrix and range explicitly and returns RGB24.

    The bytes are exactly the HEVC bitstream (VPS/SPS/PPS headers included),
    with no extra container or size header: x265 codes odd sizes itself by
    padding to its coding-block grid and signalling a conformance window, so
    the decoder outputs the original width and height.
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
        self.check_input(image, quality)
        height, width, _ = image.shape
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-i", "-",
            "-vf", "scale=out_color_matrix=bt709:out_range=full,format=yuv444p", *_COLOUR_TAGS,
            "-c:v", "libx265", "-preset", "medium",
            "-x265-params", f"qp={int(quality)}:keyint=1:info=0:log-level=error",
            "-frames:v", "1", "-f", "hevc", "-",
        ]  # fmt: skip
        return run_tool(command, stdin=np.ascontiguousarray(image).tobytes(), timeout=_TIMEOUT_S)

    def decode(self, data: bytes) -> np.ndarray:
        # A PPM frame is raw RGB24 behind a tiny text header giving the size.
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "hevc", "-i", "-",
            "-vf", "scale=in_color_matrix=bt709:in_range=full,format=rgb24",
            "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-",
        ]  # fmt: skip
        ppm = run_tool(command, stdin=data, timeout=_TIMEOUT_S)
        with Image.open(io.BytesIO(ppm), formats=["PPM"]) as decoded:
            return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()

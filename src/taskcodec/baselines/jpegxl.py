"""JPEG XL through the reference ``cjxl``/``djxl`` command-line tools."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from taskcodec.baselines.registry import ClassicalCodec, register_classical, run_tool

_TIMEOUT_S = 300.0


@register_classical("jpegxl")
class JpegXlCodec(ClassicalCodec):
    """JPEG XL via libjxl's ``cjxl``/``djxl`` with temporary files.

    Encoding: the image is written as an 8-bit RGB PNG and coded with
    ``cjxl in.png out.jxl --quality Q -e 7 --quiet`` (libjxl maps quality to
    a butteraugli distance; 100 is mathematically lossless). Decoding:
    ``djxl in.jxl out.png --bits_per_sample=8 --quiet``. The bytes are the
    complete ``.jxl`` codestream file. Qualities below 5 are rejected because
    libjxl maps them to butteraugli distances above its maximum of 25.
    """

    quality_knob = "cjxl --quality 5–100, higher is better (100 = lossless)"
    quality_range = (5, 100)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        missing = [tool for tool in ("cjxl", "djxl") if shutil.which(tool) is None]
        if missing:
            return f"{' and '.join(missing)} not on PATH; install the Debian package libjxl-tools."
        return None

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        self.check_input(image, quality)
        with tempfile.TemporaryDirectory(prefix="taskcodec-jxl-") as tmp:
            source, coded = Path(tmp) / "in.png", Path(tmp) / "out.jxl"
            Image.fromarray(image).save(source, format="PNG", compress_level=1)
            run_tool(
                ["cjxl", str(source), str(coded), "--quality", str(int(quality)), "-e", "7", "--quiet"],
                timeout=_TIMEOUT_S,
            )
            return coded.read_bytes()

    def decode(self, data: bytes) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="taskcodec-jxl-") as tmp:
            coded, decoded_path = Path(tmp) / "in.jxl", Path(tmp) / "out.png"
            coded.write_bytes(data)
            run_tool(
                ["djxl", str(coded), str(decoded_path), "--bits_per_sample=8", "--quiet"], timeout=_TIMEOUT_S
            )
            with Image.open(decoded_path, formats=["PNG"]) as decoded:
                return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()

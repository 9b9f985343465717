"""JPEG, WebP and AVIF through Pillow's built-in encoders and decoders."""

import io
from abc import abstractmethod

import numpy as np
import PIL
from PIL import Image, features

from taskcodec.baselines.registry import ClassicalCodec, register_classical


class PillowCodec(ClassicalCodec):
    """A codec that is one Pillow image format with fixed save options."""

    pillow_format: str
    """Format name passed to :meth:`PIL.Image.Image.save`."""
    pillow_feature: str
    """Name checked with :func:`PIL.features.check`."""
    quality_knob = "Pillow quality 0–100, higher is better"
    quality_range = (0, 100)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if features.check(cls.pillow_feature):
            return None
        return (
            f"Pillow {PIL.__version__} was built without {cls.pillow_format} support; "
            f"install the PyPI wheel (pip install --force-reinstall 'pillow>=11.3'), which bundles it."
        )

    @abstractmethod
    def save_options(self, quality: int) -> dict:
        """Keyword arguments for :meth:`PIL.Image.Image.save` at this quality."""

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        self.check_input(image, quality)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=self.pillow_format, **self.save_options(int(quality)))
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data), formats=[self.pillow_format]) as decoded:
            return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


@register_classical("jpeg")
class JpegCodec(PillowCodec):
    """Baseline JPEG via Pillow/libjpeg-turbo.

    Settings: ``quality=Q`` (IJG scale), ``subsampling="4:2:0"``,
    ``optimize=True`` (optimised Huffman tables), baseline (not progressive),
    no EXIF/ICC metadata.
    """

    pillow_format = "JPEG"
    pillow_feature = "jpg"

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "subsampling": "4:2:0", "optimize": True}


@register_classical("webp")
class WebpCodec(PillowCodec):
    """Lossy WebP (VP8, always 4:2:0) via Pillow/libwebp.

    Settings: ``lossless=False``, ``quality=Q``, ``method=6`` (slowest,
    best compression), no metadata.
    """

    pillow_format = "WEBP"
    pillow_feature = "webp"

    def save_options(self, quality: int) -> dict:
        return {"lossless": False, "quality": quality, "method": 6}


@register_classical("avif")
class AvifCodec(PillowCodec):
    """AVIF (AV1 intra in HEIF) via Pillow's built-in AVIF plugin (libavif).

    Settings: ``quality=Q``, ``subsampling="4:2:0"``, ``range="full"``,
    ``speed=6``, ``codec="auto"`` (the libaom encoder in the PyPI Pillow
    wheels), no metadata.
    """

    pillow_format = "AVIF"
    pillow_feature = "avif"

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "subsampling": "4:2:0", "range": "full", "speed": 6, "codec": "auto"}


@register_classical("avif444")
class Avif444Codec(AvifCodec):
    """AVIF as :class:`AvifCodec` but without chroma subsampling (``subsampling="4:4:4"``).

    AV1 codes full-resolution chroma here, which costs bits at low quality but keeps
    the thin coloured edges a classifier may rely on; the rate–accuracy comparison
    runs both so a learned codec is measured against AVIF's better setting.
    """

    def save_options(self, quality: int) -> dict:
        return {**super().save_options(quality), "subsampling": "4:4:4"}

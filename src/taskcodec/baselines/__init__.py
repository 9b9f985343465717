"""Classical image codecs (JPEG, WebP, AVIF, HEVC intra, JPEG XL) as baselines.

Importing this package registers every codec in :data:`CLASSICAL_CODECS`.
"""

from taskcodec.baselines import hevc, jpegxl, pillow_codecs  # noqa: F401  (registers the codecs)
from taskcodec.baselines.registry import CLASSICAL_CODECS, ClassicalCodec, get_classical, register_classical

__all__ = ["CLASSICAL_CODECS", "ClassicalCodec", "get_classical", "register_classical"]

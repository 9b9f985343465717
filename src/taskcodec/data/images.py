"""Reading image files as 8-bit RGB arrays and cropping them to a square.

Every dataset goes through :func:`load_rgb8` so odd files (grayscale,
alpha, palette, 16-bit, CMYK, float TIFF, rotated by EXIF) all arrive as
the same ``HxWx3`` ``uint8`` array, and a file that cannot be used (empty,
unreadable, truncated, corrupt, larger than Pillow's decompression-bomb
limit) raises an :class:`UnusableImageError` that names it.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from taskcodec.errors import UserError, shown_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA", "P")  # P: alpha from its transparency entry, if any


class UnusableImageError(UserError):
    """An image file that cannot be used, with its path and why."""

    def __init__(self, path: str | os.PathLike, reason: str, advice: str) -> None:
        self.path = shown_path(path)
        self.reason = reason
        self.advice = advice
        super().__init__(f"image {self.path} {reason}; {advice}")


def load_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file fully and return it as an ``HxWx3`` ``uint8`` RGB array.

    EXIF orientation is applied; alpha is composited onto white; 16-bit
    and float data are scaled (not clipped) to 8 bits. Images of more than
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels are refused before decoding.
    """
    path = Path(path)
    if not path.is_file():
        raise UnusableImageError(path, "does not exist", "fix the path or rerun the stage that lists it")
    if path.stat().st_size == 0:
        raise UnusableImageError(path, "is empty (0 bytes)", "remove or replace the file")
    return _decode(path, path)


def decode_rgb8(data: bytes, name: str) -> np.ndarray:
    """:func:`load_rgb8` of an image file's bytes (a member of a tar shard); ``name`` names them in errors."""
    if not data:
        raise UnusableImageError(name, "is empty (0 bytes)", "rerun prepare")
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | BinaryIO, name: str | os.PathLike) -> np.ndarray:
    """Decode ``source`` fully as :func:`load_rgb8` says; a failure is an :class:`UnusableImageError` naming
    ``name``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                return _to_rgb8(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        limit = f"{Image.MAX_IMAGE_PIXELS:,}"
        raise UnusableImageError(
            name, f"has {size}, more than the {limit} Pillow decodes safely (decompression-bomb limit)",
            "downscale or remove the file",
        ) from None
    except PermissionError:
        raise UnusableImageError(name, "cannot be read (permission denied)", "make it readable or remove it") from None
    except UnidentifiedImageError:
        raise UnusableImageError(
            name, "is not an image Pillow can read (unknown format or damaged header)", "remove or replace the file"
        ) from None
    except Exception as err:  # Pillow raises many types for corrupt, truncated or foreign files
        detail = " ".join(str(err).split())
        raise UnusableImageError(
            name, f"is truncated or corrupt ({type(err).__name__}: {detail})", "remove or replace the file"
        ) from None


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to ``uint8`` RGB."""
    if img.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img).astype(np.float64)
        return _gray_to_rgb(np.clip(np.rint(gray / 257.0), 0, 255).astype(np.uint8))
    if img.mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(img, dtype=np.float64)))
    if img.mode in _ALPHA_MODES:
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    return np.asarray(img.convert("RGB")).copy()


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale float pixels to 8 bits: [0, 1] data by 255, [0, 255] as is, wider data as 16-bit."""
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(finite.max(initial=0.0))
    scale = 255.0 if peak <= 1.0 else 1.0 if peak <= 255.0 else 1.0 / 257.0
    return np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:].astype(np.uint32)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def crop_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """How :func:`resize_center_crop` maps a ``width``×``height`` image: ``(resized width, resized height,
    left, top)``, the crop's offset in the resized image."""
    shorter = min(height, width)
    new_width, new_height = width, height
    if shorter != size:
        if width <= height:
            new_width, new_height = size, max(size, round(height * size / width))
        else:
            new_width, new_height = max(size, round(width * size / height)), size
    return new_width, new_height, (new_width - size) // 2, (new_height - size) // 2


def encode_png(img: np.ndarray) -> bytes:
    """An ``HxWx3`` ``uint8`` array as the bytes of a PNG file (Pillow's defaults, as ``prepare`` writes them)."""
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    return buffer.getvalue()


def resize_center_crop(
    img: np.ndarray, size: int, path: str | os.PathLike | None = None
) -> np.ndarray:
    """Resize so the shorter side is ``size`` (never upscaling), then crop the centre square.

    ``path`` only names the image in the error raised when it is too small.
    """
    height, width = img.shape[:2]
    if min(height, width) < size:
        raise UnusableImageError(
            path if path is not None else "(array)",
            f"is {width}x{height} pixels, smaller than prepare.image_size={size} on its shorter side",
            "set a smaller prepare.image_size or remove the file",
        )
    new_width, new_height, left, top = crop_geometry(width, height, size)
    if (new_width, new_height) != (width, height):
        resized = Image.fromarray(img).resize(
            (new_width, new_height), Image.Resampling.LANCZOS, reducing_gap=3.0
        )
        img = np.array(resized)  # writable, as every decoded image is
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def resize_center_crop_boxes(boxes: np.ndarray, width: int, height: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``x0, y0, x1, y1`` (K×4, pixels of a ``width``×``height`` image) in the square that
    :func:`resize_center_crop` makes of it, and which of them are kept.

    Pixel edges scale with the resize (Pillow maps the image's extent onto the new one) and shift by
    the crop. A box is clipped to the square; one left less than a pixel wide or high by the crop is
    dropped (``kept`` False), so a returned box always shows part of its object.
    """
    new_width, new_height, left, top = crop_geometry(width, height, size)
    scale = np.array([new_width / width, new_height / height] * 2)
    shift = np.array([left, top] * 2)
    mapped = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale - shift, 0.0, size)
    kept = (mapped[:, 2] - mapped[:, 0] >= 1.0) & (mapped[:, 3] - mapped[:, 1] >= 1.0)
    return mapped[kept], kept

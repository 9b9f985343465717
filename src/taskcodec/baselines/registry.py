"""Registry of classical (non-learned) image codecs used as baselines.

Each codec is a :class:`ClassicalCodec` subclass registered under a short
name with :func:`register_classical`; the names match the keys of
``evaluate.classical`` in ``params.yaml``. :func:`run_tool` is the shared
subprocess wrapper of the codecs that call external command-line tools.
"""

import subprocess
from abc import ABC, abstractmethod

import numpy as np

from taskcodec.errors import UserError
from taskcodec.registration import registrar


class ClassicalCodec(ABC):
    """An image codec that turns an RGB image into a complete bitstream and back.

    Subclasses set :attr:`quality_knob` and :attr:`quality_range`, implement
    :meth:`unavailable_reason`, :meth:`encode` and :meth:`decode`, and get
    :attr:`name` from :func:`register_classical`.
    The bytes returned by :meth:`encode` are everything a decoder needs
    (headers included) and are what bits per pixel are measured from.

    :meth:`encode_many` and :meth:`decode_many` code a list of images in one
    call; their defaults loop over :meth:`encode` and :meth:`decode`, and a
    codec whose cost is dominated by starting an external tool overrides
    them to start it once per batch.
    """

    name: str
    quality_knob: str
    """Human description of the quality parameter, e.g. ``"quality 0–100"``."""
    quality_range: tuple[int, int]
    """Inclusive range of accepted quality values."""

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when the codec can run here, else one sentence saying what is missing."""

    @abstractmethod
    def encode(self, image: np.ndarray, quality: int) -> bytes:
        """Compress an HxWx3 uint8 RGB image at the given quality setting."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Decompress bytes from :meth:`encode` back to an HxWx3 uint8 RGB image."""

    def encode_many(self, images: list[np.ndarray], quality: int) -> list[bytes]:
        """Compress each image at one quality; element ``i`` belongs to ``images[i]``.

        Every element is the complete standalone bitstream of its image,
        headers included: :meth:`decode` accepts it alone, and it has the size
        of what :meth:`encode` returns for that image, so bits per pixel
        measured from it are honest. The default returns exactly the bytes of
        :meth:`encode`; an override may differ from them only in header fields
        that change neither the size nor the decoded image, and documents
        which. Images may differ in size.
        """
        return [self.encode(image, quality) for image in images]

    def decode_many(self, data: list[bytes]) -> list[np.ndarray]:
        """Decompress each bitstream from :meth:`encode` or :meth:`encode_many`, in order."""
        return [self.decode(item) for item in data]

    def check_input(self, image: np.ndarray, quality: int) -> None:
        """Reject anything but an HxWx3 uint8 image and an in-range integer quality."""
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise ValueError(f"{self.name} encodes HxWx3 uint8 RGB images, got shape {shape} of {dtype}")
        low, high = self.quality_range
        if (
            isinstance(quality, bool)
            or not isinstance(quality, (int, np.integer))
            or not low <= quality <= high
        ):
            raise UserError(
                f"{self.name} quality must be an integer from {low} to {high} "
                f"({self.quality_knob}), got {quality!r}."
            )


CLASSICAL_CODECS: dict[str, type[ClassicalCodec]] = {}


#: class decorator that registers a codec under ``name`` and sets its ``name``
register_classical = registrar(CLASSICAL_CODECS, "classical codec", lambda name, cls: setattr(cls, "name", name))


def get_classical(name: str) -> ClassicalCodec:
    """An instance of the registered codec ``name``; UserError for unknown names."""
    try:
        return CLASSICAL_CODECS[name]()
    except KeyError:
        known = ", ".join(sorted(CLASSICAL_CODECS))
        raise UserError(f"Unknown classical codec {name!r}; known codecs are: {known}.") from None


def run_tool(command: list[str], stdin: bytes = b"", timeout: float = 300.0) -> bytes:
    """Run an external codec tool and return its stdout.

    A non-zero exit status or a timeout raises RuntimeError carrying the
    command and the tool's stderr.
    """
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{' '.join(command)} timed out after {timeout:g} s") from error
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{' '.join(command)} failed with exit status {result.returncode}: {stderr}")
    return result.stdout

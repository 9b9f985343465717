"""Real entropy coding of image batches through the codec contract, and decoding back.

Encoding pads each image (replicate padding, right and bottom) to a multiple of
the codec's ``pad_multiple``, has the codec entropy-code it alone
(:meth:`~taskcodec.codecs.contract.LayeredCodec.encode`), and wraps every layer
in an :class:`~taskcodec.codecs.bitstream.ImageBitstream` with the original
size, so each layer is self-contained and decoding can crop. Decoding hands a
whole batch of same-sized bitstreams to the codec's ``decode`` (one CompressAI
``decompress`` call per entropy model; see :mod:`taskcodec.codecs.compressai_codecs`),
which returns the reconstruction and the decoded latents ŷ, σ̂ per layer that
compressed-domain models train on (Gupta et al., "Learning-Based Compression
for Machines").
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from taskcodec.codecs.bitstream import CorruptBitstream, ImageBitstream
from taskcodec.codecs.contract import Decoded

#: one image's bitstream: an ImageBitstream per layer
LayeredBitstream = dict[str, ImageBitstream]


def pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad right and bottom so height and width are multiples of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def padded_size(codec, height: int, width: int) -> tuple[int, int]:
    """The size ``codec`` codes an image of ``height`` × ``width`` at."""
    multiple = codec.pad_multiple
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


@torch.no_grad()
def estimated_bits(codec, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image bits of each layer, estimated from the eval-mode likelihoods of the padded batch."""
    out = codec(pad(x, codec.pad_multiple))
    return {layer: sum(-torch.log2(lk).flatten(1).sum(dim=1) for lk in per_model.values())
            for layer, per_model in out["likelihoods"].items()}


@torch.no_grad()
def encode_images(codec, x: torch.Tensor) -> list[LayeredBitstream]:
    """Entropy-code each image of a same-sized batch (B×3×H×W in [0, 1]) on its own.

    Images are coded one at a time: CompressAI picks each latent's CDF from the
    hyper-decoder's scales, and their float rounding can change with the batch an
    image shares, which would make a bitstream undecodable alone.
    """
    height, width = x.shape[-2:]
    return [{layer: ImageBitstream(height, width, strings) for layer, strings in codec.encode(image).items()}
            for image in pad(x, codec.pad_multiple).split(1)]


@torch.no_grad()
def decode_images(codec, bitstreams: list[LayeredBitstream], pixels: bool = True) -> Decoded:
    """Decode same-sized bitstreams (the layers each holds) to latents and, if ``pixels``, images.

    The reconstruction is cropped to the original size. A bitstream that does not
    decode raises :class:`CorruptBitstream` naming its position in the batch.
    """
    first = next(iter(bitstreams[0].values()))
    height, width = first.height, first.width
    layers = tuple(bitstreams[0])
    if any(tuple(b) != layers or any((s.height, s.width) != (height, width) for s in b.values()) for b in bitstreams):
        raise ValueError("decode_images needs bitstreams of one image size and the same layers")
    size = padded_size(codec, height, width)
    decoded = _decoding(codec, bitstreams, lambda: codec.decode(_strings(bitstreams), size, pixels))
    if decoded.x_hat is not None:
        decoded.x_hat = decoded.x_hat[..., :height, :width]
    return decoded


def _strings(bitstreams: list[LayeredBitstream]) -> dict[str, list[list[bytes]]]:
    """CompressAI's layout per layer: one list per entropy model, one string per image."""
    return {layer: [list(per_model) for per_model in zip(*(b[layer].strings for b in bitstreams))]
            for layer in bitstreams[0]}


def _decoding(codec, bitstreams: list[LayeredBitstream], decode: Callable[[], Decoded]) -> Decoded:
    """``decode()`` of ``bitstreams``, turning the entropy coder's failures into :class:`CorruptBitstream`.

    The message names the failing bitstream's position in the batch, found by
    decoding them one by one when there are several.
    """
    try:
        return decode()
    except (AssertionError, IndexError, RuntimeError, ValueError, KeyError) as err:
        position = None
        if len(bitstreams) > 1:
            position = next((i for i, b in enumerate(bitstreams) if not _decodes(codec, b)), None)
        where = "" if position is None else f" (image {position} of the batch)"
        raise CorruptBitstream(
            f"a bitstream{where} does not decode with this {type(codec).__name__} model ({err}); "
            "it is corrupt or was written by another model"
        ) from None


def _decodes(codec, bitstream: LayeredBitstream) -> bool:
    try:
        decode_images(codec, [bitstream], pixels=False)
    except CorruptBitstream:
        return False
    return True

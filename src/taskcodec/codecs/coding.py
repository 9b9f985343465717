"""Real entropy coding of image batches, and decoding back to latents and pixels.

Encoding pads each image (replicate padding, right and bottom) to a multiple of
:data:`~taskcodec.codecs.registry.PAD_MULTIPLE`, runs CompressAI's
``model.compress`` (rANS) on it alone, and records its original size so decoding
can crop. Decoding goes through a per-architecture *latent decoder* that
returns the decoded latents ŷ and, for hyperprior models, the scales σ̂ that
the decoder derives from the hyperlatent; compressed-domain models train on
these (Gupta et al., "Learning-Based Compression for Machines"). A latent
decoder takes a whole batch of bitstreams in one CompressAI ``decompress``
call per entropy model (its per-call Python overhead: checks, index building,
dequantisation, is paid once per batch; CompressAI still converts its CDF
tables for every string), while every value that selects a CDF (the
hyper-decoder's σ̂) is computed image by image, exactly as the encoder
computed it, so each bitstream still decodes alone and to the same latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from compressai.models import (
    CompressionModel,
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)

from taskcodec.codecs.bitstream import CorruptBitstream, ImageBitstream
from taskcodec.codecs.registry import PAD_MULTIPLE


@dataclass
class DecodedBatch:
    """Decoder-side tensors for a batch of same-sized images."""

    x_hat: torch.Tensor | None  # B×3×H×W in [0, 1], cropped to the original size (None if not asked for)
    y_hat: torch.Tensor | None  # B×M×h×w decoded latents (None when the architecture has no latent decoder)
    scales_hat: torch.Tensor | None  # B×M×h×w σ̂ from the hyperprior (None for factorized priors)


LatentDecoder = Callable[[CompressionModel, list[list[bytes]], tuple[int, int]], tuple[torch.Tensor, torch.Tensor | None]]

#: model class → (downsampling of the latent whose shape the decoder needs, decoder of ŷ and σ̂).
#: A decoder of None means "pixels only, through the model's own ``decompress``": the autoregressive
#: models (mbt2018, cheng2020-*) decode ŷ sequentially inside it. Looked up along the class's MRO,
#: so the autoregressive entry must shadow MeanScaleHyperprior, which they subclass.
LATENT_DECODERS: dict[type, tuple[int, LatentDecoder | None]] = {
    JointAutoregressiveHierarchicalPriors: (64, None),
}


def register_latent_decoder(model_class: type, latent_divisor: int):
    def decorator(fn: LatentDecoder) -> LatentDecoder:
        LATENT_DECODERS[model_class] = (latent_divisor, fn)
        return fn

    return decorator


@register_latent_decoder(FactorizedPrior, 16)
def _decode_factorized(model, strings, shape):
    return model.entropy_bottleneck.decompress(strings[0], shape), None


def _per_image(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``module`` applied to each image alone, as :func:`encode_images` applies it (bit-identical floats)."""
    return torch.cat([module(image) for image in batch.split(1)])


@register_latent_decoder(ScaleHyperprior, 64)
def _decode_scale_hyperprior(model, strings, shape):
    z_hat = model.entropy_bottleneck.decompress(strings[1], shape)
    scales_hat = _per_image(model.h_s, z_hat)
    indexes = model.gaussian_conditional.build_indexes(scales_hat)
    y_hat = model.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)
    return y_hat, scales_hat


@register_latent_decoder(MeanScaleHyperprior, 64)
def _decode_mean_scale_hyperprior(model, strings, shape):
    z_hat = model.entropy_bottleneck.decompress(strings[1], shape)
    scales_hat, means_hat = _per_image(model.h_s, z_hat).chunk(2, 1)
    indexes = model.gaussian_conditional.build_indexes(scales_hat)
    y_hat = model.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means=means_hat)
    return y_hat, scales_hat


def _latent_decoder(model: CompressionModel) -> tuple[int, LatentDecoder | None]:
    """The most specific registered decoder for ``model``'s class (MRO order)."""
    for cls in type(model).__mro__:
        if cls in LATENT_DECODERS:
            return LATENT_DECODERS[cls]
    return PAD_MULTIPLE, None


def pad(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad right and bottom so height and width are multiples of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


@torch.no_grad()
def estimated_bits(model: CompressionModel, x: torch.Tensor) -> torch.Tensor:
    """Per-image bits estimated from the eval-mode likelihoods of the padded batch."""
    out = model(pad(x))
    return sum(
        -torch.log2(likelihoods).flatten(1).sum(dim=1) for likelihoods in out["likelihoods"].values()
    )


@torch.no_grad()
def encode_images(model: CompressionModel, x: torch.Tensor) -> list[ImageBitstream]:
    """Entropy-code each image of a same-sized batch (B×3×H×W in [0, 1]) on its own.

    Images are coded one at a time: CompressAI picks each latent's CDF from the
    hyper-decoder's scales, and their float rounding can change with the batch an
    image shares, which would make a bitstream undecodable alone (the decoder
    recomputes those scales image by image too).
    """
    height, width = x.shape[-2:]
    bitstreams = []
    for image in pad(x).split(1):
        strings = model.compress(image)["strings"]
        bitstreams.append(ImageBitstream(height, width, [per_model[0] for per_model in strings]))
    return bitstreams


@torch.no_grad()
def decode_images(model: CompressionModel, bitstreams: list[ImageBitstream], pixels: bool = True) -> DecodedBatch:
    """Decode same-sized bitstreams to ŷ and σ̂ (where supported) and, if ``pixels``, images.

    Architectures with a latent decoder decode the batch together (see the module
    docstring); the autoregressive ones decode one image at a time. A bitstream that
    does not decode raises :class:`CorruptBitstream` naming its position in the batch.
    """
    height, width = bitstreams[0].height, bitstreams[0].width
    if any((b.height, b.width) != (height, width) for b in bitstreams):
        raise ValueError("decode_images needs bitstreams of one image size")
    divisor, decoder = _latent_decoder(model)
    padded_h = math.ceil(height / PAD_MULTIPLE) * PAD_MULTIPLE
    padded_w = math.ceil(width / PAD_MULTIPLE) * PAD_MULTIPLE
    shape = (padded_h // divisor, padded_w // divisor)
    if decoder is None:
        x_hat = torch.cat([_decoding(model, [b], partial(model.decompress, _strings([b]), shape),
                                     position=i if len(bitstreams) > 1 else None)["x_hat"]
                           for i, b in enumerate(bitstreams)])
        return DecodedBatch(x_hat[..., :height, :width], None, None)
    y_hat, scales_hat = _decoding(model, bitstreams, lambda: decoder(model, _strings(bitstreams), shape))
    x_hat = model.g_s(y_hat).clamp_(0, 1)[..., :height, :width] if pixels else None
    return DecodedBatch(x_hat, y_hat, scales_hat)


def _strings(bitstreams: list[ImageBitstream]) -> list[list[bytes]]:
    """CompressAI's layout: one list per entropy model, one string per image."""
    return [list(per_model) for per_model in zip(*(b.strings for b in bitstreams))]


def _decoding(model: CompressionModel, bitstreams: list[ImageBitstream], decode: Callable[[], object],
              position: int | None = None):
    """``decode()`` of ``bitstreams``, turning the entropy coder's failures into :class:`CorruptBitstream`.

    The message names the failing bitstream's ``position`` in the caller's batch; when not
    given and ``bitstreams`` holds several, it is found by decoding them one by one.
    """
    try:
        return decode()
    except (AssertionError, IndexError, RuntimeError, ValueError) as err:
        if position is None and len(bitstreams) > 1:
            position = next((i for i, b in enumerate(bitstreams) if not _decodes(model, b)), None)
        where = "" if position is None else f" (image {position} of the batch)"
        raise CorruptBitstream(
            f"a bitstream{where} does not decode with this {type(model).__name__} model ({err}); "
            "it is corrupt or was written by another model"
        ) from None


def _decodes(model: CompressionModel, bitstream: ImageBitstream) -> bool:
    try:
        decode_images(model, [bitstream], pixels=False)
    except CorruptBitstream:
        return False
    return True

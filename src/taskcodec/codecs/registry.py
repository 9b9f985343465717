"""Registry of learned codec architectures, by the names params.yaml uses.

CompressAI's own architectures are registered under CompressAI's names
(``compressai.zoo.image.model_architectures``):

- ``bmshj2018-factorized``: Ballé et al., "End-to-end Optimized Image
  Compression", ICLR 2017 (factorized prior).
- ``bmshj2018-hyperprior``: Ballé et al., "Variational Image Compression with
  a Scale Hyperprior", ICLR 2018.
- ``mbt2018-mean`` / ``mbt2018``: Minnen et al., "Joint Autoregressive and
  Hierarchical Priors for Learned Image Compression", NeurIPS 2018.
- ``cheng2020-anchor`` / ``cheng2020-attn``: Cheng et al., "Learned Image
  Compression with Discretized Gaussian Mixture Likelihoods and Attention
  Modules", CVPR 2020 (these take only N).

A project codec is added with one class and one ``@register_codec("name")``.
Every model follows CompressAI's contract: ``forward(x)`` returns a dict with
``x_hat`` and ``likelihoods``; ``compress``/``decompress`` work on real
bitstreams after ``update()``.
"""

from __future__ import annotations

import inspect
from typing import Callable

from compressai.models import CompressionModel
from compressai.zoo import image_models
from compressai.zoo.image import model_architectures

from taskcodec.errors import UserError

CODECS: dict[str, Callable[..., CompressionModel]] = dict(model_architectures)

#: Spatial downsampling of the deepest latent of every registered model; inputs
#: are padded to a multiple of this before coding.
PAD_MULTIPLE = 64


def register_codec(name: str):
    """Class decorator adding a project codec to :data:`CODECS`."""

    def decorator(cls):
        if name in CODECS:
            raise ValueError(f"codec '{name}' is registered twice")
        CODECS[name] = cls
        return cls

    return decorator


def build_codec(arch: str, N: int, M: int) -> CompressionModel:
    """Instantiate architecture ``arch`` with ``N`` (and ``M`` where it takes one) channels."""
    if arch not in CODECS:
        raise UserError(f"unknown codec architecture '{arch}'; known: {', '.join(sorted(CODECS))}")
    constructor = CODECS[arch]
    accepts_m = "M" in inspect.signature(constructor).parameters
    return constructor(N=N, M=M) if accepts_m else constructor(N=N)


def zoo_codec(arch: str, quality: int) -> CompressionModel:
    """CompressAI's pretrained model ``arch`` at ``quality`` (downloads weights: needs internet)."""
    if arch not in image_models:
        raise UserError(f"CompressAI's zoo has no '{arch}'; it has: {', '.join(sorted(image_models))}")
    return image_models[arch](quality=quality, pretrained=True)

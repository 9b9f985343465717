"""Registry of learned codec architectures, by the names params.yaml uses.

CompressAI's own architectures are registered under CompressAI's names
(``compressai.zoo.image.model_architectures``), adapted to the codec contract
(:mod:`taskcodec.codecs.compressai_codecs`):

- ``bmshj2018-factorized``: Ballé et al., "End-to-end Optimized Image
  Compression", ICLR 2017 (factorized prior).
- ``bmshj2018-hyperprior``: Ballé et al., "Variational Image Compression with
  a Scale Hyperprior", ICLR 2018.
- ``mbt2018-mean`` / ``mbt2018``: Minnen et al., "Joint Autoregressive and
  Hierarchical Priors for Learned Image Compression", NeurIPS 2018.
- ``cheng2020-anchor`` / ``cheng2020-attn``: Cheng et al., "Learned Image
  Compression with Discretized Gaussian Mixture Likelihoods and Attention
  Modules", CVPR 2020 (these take only N).
- ``bmshj2018-hyperprior-vbr`` / ``mbt2018-mean-vbr`` (variable rate, :mod:`taskcodec.codecs.compressai_vbr`): Kamisli
  et al., "Variable-Rate Learned Image Compression with Multi-Objective Optimization and […] Offsets", DCC 2024.

The project's own layered codecs:

- ``scalable-hyperprior``: Özyılkan et al., "Learned Disentangled Latent
  Representations for Scalable Image Coding for Humans and Machines", DCC 2023
  (seed 002; :mod:`taskcodec.codecs.scalable`).
- ``pyramid``: Sinha et al., "Self-Supervised Variable Rate Image Compression
  using Visual Attention" (seed 001; :mod:`taskcodec.codecs.pyramid`), one model
  for several rates.
- ``choi2022-scalable``: Choi & Bajić, "Scalable Image Coding for Humans and
  Machines", IEEE TIP 2022, seed 002's baseline, on the same base
  architecture (:mod:`taskcodec.codecs.choi2022`).

A project codec is one class with one ``@register_codec("name")``: a
:class:`compressai.models.CompressionModel` that inherits
:class:`~taskcodec.codecs.contract.LayeredCodec` and implements its methods.
Its constructor's parameters are the hyperparameters a ``codec.sweep.models``
entry gives (integers, e.g. ``N`` and ``M``), except ``task_model``: a codec
built on the frozen task model (class attribute ``needs_task_model``) gets it
from the stage that builds it.
"""

from __future__ import annotations

import difflib
import inspect

import torch
from compressai.models import CompressionModel
from compressai.zoo.image import load_pretrained, model_urls
from torch.hub import load_state_dict_from_url

from taskcodec.codecs.compressai_codecs import COMPRESSAI_CODECS
from taskcodec.codecs.contract import LayeredCodec
from taskcodec.errors import UserError
from taskcodec.registration import registrar
from taskcodec.plugins import load_plugins

CODECS: dict[str, type] = dict(COMPRESSAI_CODECS)
#: constructor parameters that are frozen networks a stage hands over, not sweep hyperparameters
FROZEN_MODELS = ("task_model", "ssl_model")


def _accept_codec(name: str, cls: type) -> None:
    if not (issubclass(cls, CompressionModel) and issubclass(cls, LayeredCodec)):
        raise TypeError(f"codec '{name}' must subclass compressai's CompressionModel and taskcodec's LayeredCodec")


#: class decorator adding a project codec to :data:`CODECS`
register_codec = registrar(CODECS, "codec", _accept_codec)


def codec_class(arch: str) -> type:
    """The registered class of ``arch``; an unknown name is a :class:`UserError` with the closest names."""
    load_plugins()
    if arch not in CODECS:
        close = difflib.get_close_matches(arch, CODECS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(CODECS))}"
        raise UserError(f"unknown codec architecture '{arch}' ({hint})")
    return CODECS[arch]


def codec_hyperparameters(arch: str) -> tuple[list[str], list[str]]:
    """(required, optional) constructor parameters of ``arch``: the keys a sweep entry may give."""
    parameters = _constructor_parameters(arch)
    return ([p.name for p in parameters if p.default is p.empty],
            [p.name for p in parameters if p.default is not p.empty])


def _constructor_parameters(arch: str) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(codec_class(arch)).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in FROZEN_MODELS]


def hyper_label(hyper: dict[str, int]) -> str:
    """A sweep entry's hyperparameters as one path segment and table label: ``{"N": 32, "M": 48}`` → ``N32-M48``."""
    return "-".join(f"{name}{value}" for name, value in hyper.items())


def needs_task_model(arch: str) -> bool:
    """Whether ``arch`` is built on the frozen task model (e.g. the scalable codec's base layer)."""
    return getattr(codec_class(arch), "needs_task_model", False)


def needs_ssl_model(arch: str) -> bool:
    """Whether ``arch`` is built on the frozen self-supervised network (seed 001's pyramid codec)."""
    return getattr(codec_class(arch), "needs_ssl_model", False)


def reads_ssl_model(arch: str, hyper: dict, perceptual_weight: float) -> bool:
    """Whether the model of a sweep entry (``arch``, ``hyper``, β = ``perceptual_weight``) reads the frozen
    self-supervised network, so that the network trains only then: a codec built on it reads it unless its class's
    ``reads_ssl_model`` of every hyperparameter (defaults filled in) and β says otherwise (the pyramid's baseline)."""
    if not needs_ssl_model(arch):
        return False
    decide = getattr(codec_class(arch), "reads_ssl_model", None)
    if decide is None:
        return True
    defaults = {p.name: p.default for p in _constructor_parameters(arch) if p.default is not p.empty}
    return decide({**defaults, **hyper}, perceptual_weight)


def is_variable_rate(arch: str) -> bool:
    """Whether ``arch`` is one model for several rates (its constructor takes ``levels``; seed 001)."""
    return getattr(codec_class(arch), "variable_rate", False)


def build_codec(arch: str, hyper: dict[str, int], task_model: torch.nn.Module | None = None,
                ssl_model: torch.nn.Module | None = None) -> CompressionModel:
    """Instantiate ``arch`` with the hyperparameters ``hyper`` (e.g. ``{"N": 64, "M": 96}``), and the frozen
    ``task_model`` or ``ssl_model`` when the architecture is built on one (:func:`needs_task_model`,
    :func:`needs_ssl_model`)."""
    required, optional = codec_hyperparameters(arch)
    unknown = sorted(set(hyper) - set(required) - set(optional))
    if unknown:
        raise UserError(f"codec {arch} takes no hyperparameter '{unknown[0]}' (it takes "
                        f"{', '.join(required + optional)}); remove it from the sweep entry")
    missing = [name for name in required if name not in hyper]
    if missing:
        raise UserError(f"codec {arch} needs the hyperparameter '{missing[0]}'; add it to the sweep entry")
    frozen = {"task_model": task_model} if needs_task_model(arch) else {}
    frozen.update({"ssl_model": ssl_model} if needs_ssl_model(arch) else {})
    return codec_class(arch)(**hyper, **frozen)


def zoo_codec(arch: str, quality: int) -> CompressionModel:
    """CompressAI's pretrained MSE model ``arch`` at ``quality`` (downloads weights: needs internet).

    The weights come from CompressAI's own URLs and are loaded as CompressAI's zoo does, except that
    unpickling is restricted to tensors (``weights_only=True``): a tampered download cannot run code.
    """
    if arch not in model_urls or quality not in model_urls[arch].get("mse", {}):
        raise UserError(f"CompressAI's zoo has no MSE model '{arch}' at quality {quality}; it has: "
                        f"{', '.join(sorted(model_urls))} at qualities 1-8")
    state = load_state_dict_from_url(model_urls[arch]["mse"][quality], progress=True, weights_only=True)
    return codec_class(arch).from_state_dict(load_pretrained(state))


# The project's own codecs register themselves on import (after register_codec exists).
from taskcodec.codecs import choi2022, compressai_vbr, pyramid, scalable  # noqa: E402,F401

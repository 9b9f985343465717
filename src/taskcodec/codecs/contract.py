"""The plug-in contract of a learned codec: everything the stages ask of an architecture.

A codec is a :class:`compressai.models.CompressionModel` (so ``aux_loss()``,
``update(force=True)`` and its entropy models' CDF tables work as in CompressAI)
that also inherits :class:`LayeredCodec`. Its bitstream has one or more named
*layers*; each layer of an image is a self-contained list of entropy-coded
strings (one per entropy model of the layer), so a receiver downloads only the
layers it needs (``receivers``): e.g. a base layer for a machine and base +
enhancement for a person (Choi & Bajić's scalable coding, seed 002), or the
levels of a feature pyramid (seed 001). Single-layer codecs have one layer,
``"main"``.

What the stages call, and nothing else:

- ``forward(x, quantization="noise")`` → ``{"x_hat": B×3×H×W, "likelihoods":
  {layer: {name: tensor}}}`` (training; :func:`taskcodec.losses.bits_per_pixel`
  sums the layers); ``quantization="ste"`` feeds the synthesis rounded latents
  with a straight-through gradient while the likelihoods keep additive noise
  (needed only for ``codec.train.quantization: ste``);
- ``encode(x)`` → ``{layer: [bytes, ...]}`` for one padded image 1×3×H×W;
- ``decode(strings, padded_size, pixels)`` → :class:`Decoded` for a batch of
  same-sized images, from ``{layer: [[string of image i for entropy model k]
  for k]}``: the reconstruction (when the given layers suffice for it) and the
  decoded latents ŷ, σ̂ per layer that compressed-domain models read;
- ``synthesize(latents)`` → the reconstruction from decoded latents (what ``decode``
  does after entropy decoding; timed on its own by the speed benchmark);
- ``analyze(x)`` → ``{"latents": {layer: Latents}, "likelihoods": {layer: ...}}``,
  the differentiable encoder side (ŷ rounded with a straight-through gradient)
  for training a compressed-domain model jointly with the encoder;
- ``pad_multiple``: the input's sides are padded to a multiple of it;
- ``task_outputs(latents)`` (only codecs built on the frozen task model, class
  attribute ``needs_task_model``): the task model's outputs from the task
  receiver's latents, without a reconstruction (seed 002's base layer);
- ``operating_points`` and ``select_point(k)`` (only variable-rate codecs: one
  model, several rates, e.g. seed 001's pyramid levels): from ``select_point(k)``
  on, ``forward``, ``encode`` and ``decode`` work at operating point ``k``
  (0 = the lowest rate), which the training loss weights with its own λ;
  ``set_lambdas(lmbdas)`` tells it the run's λ, one per point; ``point_weights``
  (``None``: all alike) how often training draws each point. A training
  ``forward`` may instead return every point's output under ``points`` (the
  pyramid's ``joint``), which the loss weighs with the same ``point_weights``.

A new architecture is one module with one class decorated by
:func:`taskcodec.codecs.registry.register_codec`; see README "Extending taskcodec".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class Latents:
    """One layer's decoded latents for a batch."""

    y_hat: torch.Tensor  # B×C×h×w, the quantised latent the synthesis reads
    scales_hat: torch.Tensor | None  # B×C×h×w σ̂ of its Gaussian conditional (None for factorized priors)


@dataclass
class Decoded:
    """Decoder-side tensors of a batch of same-sized images."""

    x_hat: torch.Tensor | None  # B×3×H×W in [0, 1] (None when not asked for or not decodable from the layers)
    latents: dict[str, Latents] | None  # by layer (None: the architecture decodes pixels only)


class LayeredCodec:
    """Mixin declaring the codec contract; see the module docstring."""

    #: the bitstream layers, in coding order
    layers: ClassVar[tuple[str, ...]] = ("main",)
    #: which layers a receiver needs for which output: "image" (the reconstruction) and
    #: optionally "task" (the latents a compressed-domain or task model reads)
    receivers: ClassVar[dict[str, tuple[str, ...]]] = {"image": ("main",)}
    #: spatial downsampling of the deepest latent; inputs are padded to a multiple of it
    pad_multiple: ClassVar[int] = 64

    #: a variable-rate codec: its constructor takes ``levels``, its number of operating points, which the run's
    #: λ list sets (one λ per point)
    variable_rate: ClassVar[bool] = False
    #: operating points of one trained model (1: a single-rate codec)
    operating_points: int = 1
    #: relative frequencies with which training draws the operating points (None: uniform)
    point_weights: tuple[float, ...] | None = None
    #: the training loss weighs a perceptual term (set by ``codec_loss``): a codec that can, then also returns
    #: ``features`` and ``features_hat`` from ``forward``; without it, it spends no work on them
    perceptual: bool = False

    def select_point(self, index: int) -> None:
        """Work at operating point ``index`` from now on (a single-rate codec has only point 0)."""
        if index != 0:
            raise ValueError(f"{type(self).__name__} has one operating point, not {index + 1}")

    def set_lambdas(self, lmbdas: list[float]) -> None:
        """A variable-rate codec told its run's λ, one per operating point (CompressAI's variable-rate models
        set their quantisation gains from them); the others need nothing."""

    def encode(self, x: torch.Tensor) -> dict[str, list[bytes]]:
        raise NotImplementedError

    def decode(self, strings: dict[str, list[list[bytes]]], padded_size: tuple[int, int],
               pixels: bool = True) -> Decoded:
        raise NotImplementedError

    def synthesize(self, latents: dict[str, Latents]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} decodes pixels only inside decode()")

    def analyze(self, x: torch.Tensor) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no differentiable latent analysis")

    def task_outputs(self, latents: dict[str, Latents]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} carries no task model: run it on the reconstruction")

    @classmethod
    def task_layer(cls) -> str:
        """The layer whose latents a compressed-domain model reads: the first one the task receiver needs."""
        return cls.receivers.get("task", cls.layers)[0]

    @classmethod
    def layers_for(cls, output: str) -> tuple[str, ...]:
        """The layers a receiver downloads for ``output`` ("image" or "task"), in coding order."""
        wanted = set(cls.receivers.get(output, cls.receivers["image"]))
        return tuple(layer for layer in cls.layers if layer in wanted)

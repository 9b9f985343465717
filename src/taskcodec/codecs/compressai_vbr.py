"""CompressAI's variable-rate models under the codec contract: one trained model, several rates.

F. Kamisli, F. Racapé and H. Choi, "Variable-Rate Learned Image Compression
with Multi-Objective Optimization and Quantization-Reconstruction Offsets",
Data Compression Conference (DCC) 2024 (arXiv:2402.18930), as CompressAI 1.2.8
implements it (``compressai.models.vbr``), registered under CompressAI's names:

- ``bmshj2018-hyperprior-vbr``: :class:`compressai.models.ScaleHyperpriorVbr`
  (Ballé et al.'s scale hyperprior, ICLR 2018);
- ``mbt2018-mean-vbr``: :class:`compressai.models.MeanScaleHyperpriorVbr`
  (Minnen et al.'s mean-scale hyperprior, NeurIPS 2018).

Each is a subclass of CompressAI's class, so weights, state-dict keys and
bitstreams are CompressAI's: training runs CompressAI's own ``forward``,
encoding its ``compress``; decoding uses its entropy models with the per-image
hyper-decoder of :mod:`taskcodec.codecs.compressai_codecs` and the
reconstruction rule of its ``decompress``.

**How the rate varies.** Operating point ``k`` (0 = the lowest rate) has a gain
``g_k = Gain[k]``, the inverse of a quantisation step: the latent (minus the
predicted mean) is multiplied by ``g_k`` before rounding and entropy coding (the
Gaussian conditional's σ̂ too) and divided by it after, and every nonzero
symbol is moved towards zero by a quantisation-reconstruction offset that a
small network (``QuantABCD``) predicts from (σ̂·g_k, g_k). The hyper-latent z is
coded with the same step at every point (``vr_entbttlnck=False``; the paper's
third tool, a gain-dependent step for z, would make the entropy bottleneck's
CDF tables depend on the point: ``update(scale=Gain[k])`` at every change of
point, for a small gain at low rates). The point is not in the bitstream: an
image decodes only with the point it was encoded at (the contract's
``select_point`` before ``decode``), as with CompressAI's ``decompress(…, s)``.

**The points' gains.** CompressAI's constructor has 8 points with λ
0.0018…0.18 and ``Gain[k] = sqrt(λ_k / λ_max)`` (0.1…1: the quantisation step
of the distortion's λ under the high-rate approximation). ``levels`` sets the
number of points: 8 keeps CompressAI's values; another count spaces the λ
geometrically over CompressAI's range and derives the gains the same way.
The constructor takes integers only, so a run's own λ list sets its gains by
:meth:`VariableRateCodec.set_lambdas`, called before training (``Gain`` is in
the state dict: checkpoints keep it). The gains stay fixed in training:
CompressAI's ``forward`` detaches ``Gain`` (a parameter with no gradient).

**How the points are trained.** CompressAI ships no training script for these
models; the paper post-trains a single-rate model (CompressAI's ``stage=1``
path, the plain hyperprior at the highest λ with additive noise) with all λ at
once (``stage=2``), by multi-objective optimisation: each step takes the
gradient of every point's loss and descends along their min-norm convex
combination (MGDA, Frank–Wolfe solver). Here training is ``stage=2`` from the
first step: the contract's trainer draws one point ``k`` per step
(:meth:`select_point`) and descends R + λ_k·D with the run's k-th λ, an
equal-weight scalarisation of the same objectives at the cost of one forward per
step (MGDA needs every point's gradient, ``levels`` times the cost). Stage 2 is
a complete training proxy on its own (additive noise in the rates, rounded
latents with a straight-through gradient into the synthesis), so the
single-rate stage is a warm start rather than a requirement; it is not used.
``forward``'s ``quantization`` "noise" and "ste" are therefore the same path.
"""

from __future__ import annotations

import math
import operator
from typing import ClassVar, Sequence

import torch
from compressai.models import CompressionModel, MeanScaleHyperpriorVbr, ScaleHyperpriorVbr
from compressai.ops import quantize_ste

from taskcodec.codecs.compressai_codecs import per_image
from taskcodec.codecs.contract import Decoded, LayeredCodec, Latents
from taskcodec.codecs.registry import register_codec
from taskcodec.errors import UserError


class VariableRateCodec(LayeredCodec):
    """Adapter of CompressAI's VBR models (see the module docstring): one layer, ``levels`` operating points."""

    #: whether the hyper-decoder predicts the latent's means besides its scales (mbt2018-mean)
    variable_rate = True
    predicts_means: ClassVar[bool] = False
    #: spatial downsampling of the hyper-latent z, whose shape decoding needs
    shape_divisor: ClassVar[int] = 64

    def __init__(self, N: int, M: int, levels: int):
        if levels < 1:
            raise UserError(f"a variable-rate codec needs at least one operating point (levels), not {levels}")
        super().__init__(N=N, M=M, vr_entbttlnck=False)  # CompressAI's constructor
        lmbdas = list(self.lmbda)  # CompressAI's 8 training λ, whose gains are sqrt(λ / λ_max)
        if levels != len(lmbdas):
            low, high = lmbdas[0], lmbdas[-1]
            lmbdas = [high] if levels == 1 else [low * (high / low) ** (k / (levels - 1)) for k in range(levels)]
            self.Gain = torch.nn.Parameter(torch.tensor([math.sqrt(lm / high) for lm in lmbdas]), requires_grad=True)
        self.lmbda, self.levels = lmbdas, levels
        self._point = 0

    @property
    def operating_points(self) -> int:
        return self.levels

    @property
    def point(self) -> int:
        """The operating point that ``forward``/``encode``/``decode``/``analyze`` work at."""
        return self._point

    def select_point(self, index: int) -> None:
        index = operator.index(index)  # an integer (a float is a TypeError)
        if not 0 <= index < self.levels:
            raise ValueError(f"{type(self).__name__} has operating points 0…{self.levels - 1}, not {index}")
        self._point = index

    def set_lambdas(self, lmbdas: Sequence[float]) -> None:
        """Gains for a run's own ascending λ list (one per point), as CompressAI's are for its: sqrt(λ/λ_max)."""
        lmbdas = [float(value) for value in lmbdas]
        if len(lmbdas) != self.levels or lmbdas != sorted(lmbdas) or lmbdas[0] <= 0:
            raise UserError(f"{type(self).__name__} needs {self.levels} positive ascending λ, not {lmbdas}")
        with torch.no_grad():
            self.Gain.copy_(torch.tensor([math.sqrt(value / lmbdas[-1]) for value in lmbdas]))
        self.lmbda = lmbdas

    def gain(self) -> torch.Tensor:
        """The selected point's gain, as CompressAI's ``compress``/``decompress`` take it (no gradient)."""
        return self.Gain[self._point].detach().abs()

    # -- training -------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, quantization: str = "noise") -> dict:
        """CompressAI's variable-rate path (``stage=2``) at the selected point; both quantizations are its
        own (noisy likelihoods, straight-through rounding with offsets into the synthesis)."""
        if quantization not in ("noise", "ste"):
            raise ValueError(f"quantization must be 'noise' or 'ste', not {quantization!r}")
        out = super().forward(x, stage=2, s=self._point)
        return {"x_hat": out["x_hat"], "likelihoods": {"main": out["likelihoods"]}}

    def analyze(self, x: torch.Tensor) -> dict:
        """The encoder side of ``forward`` (same values and gradients): ŷ as the synthesis reads it, σ̂ of the
        hyper-decoder in ŷ's units (before the gain), and the likelihoods."""
        scale = self.gain()
        y = self.g_a(x)
        z = self.h_a(y if self.predicts_means else torch.abs(y))
        _, z_likelihoods = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - medians) + medians
        scales_hat, means_hat = self._gaussian_parameters(self.h_s(z_hat))
        centred = (y if means_hat is None else y - means_hat) * scale
        signs = torch.sign(centred).detach()
        y_hat = self._reconstruct(signs, quantize_ste(torch.abs(centred)), scales_hat, means_hat, scale)
        _, y_likelihoods = self.gaussian_conditional(
            y * scale, scales_hat * scale, means=None if means_hat is None else means_hat * scale)
        return {"latents": {"main": Latents(y_hat, scales_hat)},
                "likelihoods": {"main": {"y": y_likelihoods, "z": z_likelihoods}}}

    # -- coding ---------------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> dict[str, list[bytes]]:
        """CompressAI's strings [y, z] of one padded image at the selected point."""
        return {"main": [per_model[0] for per_model in self.compress(x, stage=2, s=self._point)["strings"]]}

    def decode(self, strings: dict[str, list[list[bytes]]], padded_size: tuple[int, int],
               pixels: bool = True) -> Decoded:
        """A batch of bitstreams of the selected point (the rate is not in the bitstream: the point's gain
        decodes it); every value that selects a CDF or makes ŷ is computed image by image, as the encoder
        did, so each bitstream decodes alone and to the same latents."""
        y_strings, z_strings = strings["main"]
        shape = (padded_size[0] // self.shape_divisor, padded_size[1] // self.shape_divisor)
        scale = self.gain()
        z_hat = self.entropy_bottleneck.decompress(z_strings, shape)
        scales_hat, means_hat = self._gaussian_parameters(per_image(self.h_s, z_hat))
        indexes = self.gaussian_conditional.build_indexes(scales_hat * scale)
        symbols = self.gaussian_conditional.decompress(y_strings, indexes, z_hat.dtype)
        y_hat = torch.cat([
            self._reconstruct(torch.sign(q), q.abs(), scales_hat[i : i + 1],
                              None if means_hat is None else means_hat[i : i + 1], scale)
            for i, q in enumerate(symbols.split(1))])
        latents = {"main": Latents(y_hat, scales_hat)}
        return Decoded(self.synthesize(latents) if pixels else None, latents)

    def synthesize(self, latents: dict[str, Latents]) -> torch.Tensor:
        return self.g_s(latents["main"].y_hat).clamp_(0, 1)

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False, scale=None) -> bool:
        """CompressAI's ``CompressionModel.update`` (with ``update_quantiles``, which the VBR ``update`` lacks).

        With the fixed-step hyper-latent (``vr_entbttlnck=False``) the CDF tables serve every operating point,
        and CompressAI's VBR ``update`` ignores ``scale``; it is accepted for its signature.
        """
        return CompressionModel.update(self, scale_table=scale_table, force=force, update_quantiles=update_quantiles)

    @classmethod
    def from_state_dict(cls, state_dict):
        """A model shaped like ``state_dict`` (N, M, levels) holding its weights."""
        net = cls(N=state_dict["g_a.0.weight"].size(0), M=state_dict["g_a.6.weight"].size(0),
                  levels=state_dict["Gain"].numel())
        net.load_state_dict(state_dict)
        return net

    # -- helpers --------------------------------------------------------------------------------------

    def _gaussian_parameters(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(σ̂, μ̂ or None) from the hyper-decoder's output."""
        if self.predicts_means:
            scales_hat, means_hat = params.chunk(2, 1)
            return scales_hat, means_hat
        return params, None

    def _reconstruct(self, signs: torch.Tensor, q_abs: torch.Tensor, scales_hat: torch.Tensor,
                     means_hat: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
        """ŷ from the rounded scaled latent (signs, magnitudes), as CompressAI's stage-2 ``forward`` and
        ``decompress`` make it: the reconstruction offset of QuantABCD(σ̂·g, g) on every nonzero symbol."""
        if self.no_quantoffset:  # CompressAI 1.2.8's forward fails with it; kept False
            offsets = torch.zeros_like(q_abs)
        else:
            stdev = self.gaussian_conditional.lower_bound_scale(scales_hat * scale).unsqueeze(4)
            offsets = -self.QuantABCD(torch.cat((stdev, scale.expand(stdev.shape)), dim=4)).squeeze(4)
            offsets = torch.where(q_abs < 0.0001, torch.zeros_like(offsets), offsets)
        y_hat = signs * (q_abs + offsets) * (1.0 / scale)  # CompressAI multiplies by the inverse gain
        return y_hat if means_hat is None else y_hat + means_hat


@register_codec("bmshj2018-hyperprior-vbr")
class ScaleHyperpriorVariableRate(VariableRateCodec, ScaleHyperpriorVbr):
    """CompressAI's ``bmshj2018-hyperprior-vbr`` with ``levels`` operating points (``N``, ``M``: channels)."""


@register_codec("mbt2018-mean-vbr")
class MeanScaleHyperpriorVariableRate(VariableRateCodec, MeanScaleHyperpriorVbr):
    """CompressAI's ``mbt2018-mean-vbr`` with ``levels`` operating points (``N``, ``M``: channels)."""

    predicts_means = True

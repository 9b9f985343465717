"""One model, several rates: a feature-pyramid codec with a hierarchical decoder of shared weights (seed 001).

Sinha, Moorthi, Dhar, "Self-Supervised Variable Rate Image Compression using
Visual Attention" (2022), built from CompressAI's layers (GDN, ``EntropyBottleneck``):

- **Input features** ``φ``: the first-stage ("group 1", stride 4) features of a
  frozen self-supervised network (``simclr=1``, :mod:`taskcodec.selfsupervised`), or, for
  the paper's baseline (``simclr=0``), a learned stem on the raw image (two
  stride-2 convolutions with GDN, also stride 4).
- **Self-attention** ``A(φ)`` (SAGAN: Zhang et al., "Self-Attention Generative
  Adversarial Networks", ICML 2019; :class:`SelfAttention`), placed by
  ``attention``: 0 none, 1 after the feature extractor (encoder), 2 in the
  decoder, 3 both — the paper's four-way ablation (Section 4.2). The decoder's
  attention sits on its stride-4 features, the mirror of the encoder's, rather
  than right before its last layer at stride 2, where attention over every pair
  of positions of a Kodak image does not fit a CPU budget.
- **Feature pyramid encoder**: 5×5 convolutions with GDN from stride 4 down to
  half the finest level's stride (``finest_stride`` 16: one stride-2 step to
  stride 8; 8: a stride-1 step; 32, 64, …: one stride-2 step more per octave)
  and one stride-2 step more per coarser level; level ``i`` (1 =
  coarsest, stride finest_stride·2^(levels−i)) is a strided 5×5 convolution to ``M`` channels, without
  GDN, of the pyramid at half its stride (bmshj2018-factorized's last analysis
  layer; a GDN step and then a 3×3 projection trained 1.5 dB worse at one level),
  quantised and entropy-coded to its own bitstream layer ``level<i>`` with a fully
  factorized prior (the paper's equation 1: one ``EntropyBottleneck`` per level).
  ``conditional=1`` (not in the paper; off by default) codes levels 2…L instead with
  a ``GaussianConditional`` whose means and scales a small network predicts from
  the next coarser level's ŷ, which every receiver of level i already holds: the
  coarser level serves as the finer one's hyperprior (as z does in Minnen et al.'s
  mean-scale hyperprior, NeurIPS 2018), so a level no longer pays again for what
  the levels below it carry.
- **Hierarchical decoder with shared weights**: ``D_1`` maps ŷ_1 through one
  synthesis trunk (5×5 transposed convolutions with inverse GDN) up to the
  image, its first step reading ŷ_1 itself as bmshj2018-factorized's synthesis
  does; ``D_i`` is ``D_{i−1}`` plus its own parameters θ_i: a 3×3 convolution
  that adds ŷ_i into the trunk where the trunk reaches level i's resolution,
  and a channel-wise scale and bias of the trunk's features at every step
  (the conditional convolution of Choi, El-Khamy and Lee, "Variable Rate Deep
  Image Compression With a Conditional Autoencoder", ICCV 2019), so that the
  shared trunk knows which levels it decodes. So operating point ``k``
  (:meth:`select_point`, 0-based) downloads levels 1…k+1 and decodes with
  θ_1…θ_{k+1}.

Training (:class:`taskcodec.losses.VariableRateLoss`): each step the trainer
draws one operating point ``k``, with probability (2k+1)/L² (:data:`point_weights`:
the finer points, which carry the most information, more often), and applies
``R_{≤k} + λ_k·D + β·λ_k·P`` with the run's ascending λ list: an unbiased
estimate of the paper's equation 2, ``Σ_i α_i·D_i + β_i·P_i + γ_i·H_i``, with
α_i ∝ (2i−1)·λ_i and β_i ∝ β·(2i−1)·λ_i growing and γ_i ∝ Σ_{j≥i} (2j−1)
falling with the level, the ordering the paper prescribes. ``joint=1`` computes
that sum itself instead: one encoder pass, every point decoded (``points`` in
the training output), each point's loss weighted as the draw would weigh it;
a step then costs about 2.5 drawn ones at 4 levels. ``top_only=1`` trains the
top point alone: given the first k+1 of an L-level pyramid's λ and
``finest_stride`` f·2^(L−1−k) (f: that pyramid's), it is the per-λ model of
that pyramid's point k (the same levels, strides and decoder), what a
variable-rate pyramid's training cost is measured against. Both the modulation and
the weighted draw were chosen on the photos' validation split (bench/README.md,
"One model, many rates").
``P`` is the MSE between the frozen self-supervised network's features of x and
x̂ (the paper uses VGG-19's, which cannot be downloaded here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste
from torch import nn

from taskcodec.codecs.compressai_codecs import per_image
from taskcodec.codecs.contract import Decoded, LayeredCodec, Latents
from taskcodec.codecs.registry import register_codec
from taskcodec.errors import UserError

#: stride of the input features φ
FEATURE_STRIDE = 4
#: ``attention`` hyperparameter → (in the encoder, in the decoder)
PLACEMENTS = {0: (False, False), 1: (True, False), 2: (False, True), 3: (True, True)}


#: attention scores computed at once (queries × keys × images): bounds the memory of attention on large images
SCORES_AT_ONCE = 2**24


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al., ICML 2019): ``x + γ·softmax(q kᵀ) v`` over spatial positions, γ
    starting at 0 so training begins from the identity. Keys and values are max-pooled 2×2 (as BigGAN's
    SAGAN block does) and the product runs through ``scaled_dot_product_attention`` in chunks of queries
    (:data:`SCORES_AT_ONCE` scores each; every query's softmax is its own), so a Kodak image fits in memory."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        pooled = F.max_pool2d(x, 2) if min(height, width) >= 2 else x
        q = self.query(x).flatten(2).transpose(1, 2)  # B × HW × C'
        k = self.key(pooled).flatten(2).transpose(1, 2)  # B × hw × C'
        v = self.value(pooled).flatten(2).transpose(1, 2)  # B × hw × C
        chunk = max(1, SCORES_AT_ONCE // (batch * k.shape[1]))
        attended = torch.cat([F.scaled_dot_product_attention(part, k, v, scale=1.0)  # SAGAN's energy has no 1/√d
                              for part in q.split(chunk, dim=1)], dim=1)
        return x + self.gamma * attended.transpose(1, 2).reshape(batch, channels, height, width)


def _down(channels_in: int, channels_out: int, stride: int = 2) -> nn.Sequential:
    return nn.Sequential(conv(channels_in, channels_out, kernel_size=5, stride=stride), GDN(channels_out))


def _to_finest(channels_in: int, channels_out: int, finest_stride: int) -> nn.Sequential:
    """From the features' stride 4 to half the finest level's stride: one stride-1 step (finest 8) or one
    stride-2 step per octave (5×5 convolutions with GDN)."""
    if finest_stride == 2 * FEATURE_STRIDE:
        return _down(channels_in, channels_out, 1)
    octaves = finest_stride.bit_length() - (2 * FEATURE_STRIDE).bit_length()  # 16 → 1, 32 → 2, …
    return nn.Sequential(*[layer for i in range(octaves)
                           for layer in _down(channels_in if i == 0 else channels_out, channels_out)])


@register_codec("pyramid")
class FeaturePyramidCodec(CompressionModel, LayeredCodec):
    """Seed 001's variable-rate codec (see the module docstring). ``N``: channels of the transforms; ``M``:
    channels of each level's latent; ``levels``: pyramid levels = operating points; ``attention``: placement
    code of :data:`PLACEMENTS`; ``simclr``: 1 to read the frozen self-supervised features, 0 for the learned
    stem; ``conditional``: 1 to code levels 2…L conditioned on the next coarser level (module docstring), 0 for
    the paper's factorized prior per level; ``finest_stride``: the finest level's stride, a power of two ≥ 8
    (level i of L has stride finest_stride · 2^(L − i)); ``joint``: 1 to train every point at each step (module
    docstring), 0 for one drawn point; ``top_only``: 1 to train the top point alone (module docstring);
    ``ssl_model``: that frozen network (``channels``, ``stride`` 4, ``forward`` → features), given by the stage
    that builds the codec, also the perceptual term's feature space."""

    needs_ssl_model = True
    variable_rate = True

    @staticmethod
    def reads_ssl_model(hyper: dict, perceptual_weight: float) -> bool:
        """Whether the pyramid of ``hyper`` (every hyperparameter, defaults included) reads the frozen network:
        its features as the encoder's input (``simclr`` 1) or as a perceptual term's space (β > 0)."""
        return bool(hyper["simclr"]) or perceptual_weight > 0

    def __init__(self, N: int, M: int, levels: int = 3, attention: int = 1, simclr: int = 1, conditional: int = 0,
                 finest_stride: int = 16, joint: int = 0, top_only: int = 0, ssl_model: nn.Module | None = None):
        super().__init__()
        if attention not in PLACEMENTS:
            raise UserError(f"pyramid: attention is {attention}; use 0 (none), 1 (encoder), 2 (decoder) or 3 (both)")
        if levels < 1 or any(flag not in (0, 1) for flag in (simclr, conditional, joint, top_only)):
            raise UserError(f"pyramid: levels must be ≥ 1 and simclr, conditional, joint and top_only 0 or 1, not "
                            f"{levels}, {simclr}, {conditional}, {joint} and {top_only}")
        if not (isinstance(finest_stride, int) and finest_stride >= 8 and finest_stride & (finest_stride - 1) == 0):
            raise UserError(f"pyramid: finest_stride is {finest_stride}; use a power of two ≥ 8 (16 by default)")
        if joint and top_only:
            raise UserError("pyramid: joint 1 trains every point and top_only 1 the top point alone; set one to 0")
        if simclr and ssl_model is None:
            raise UserError("the pyramid codec with simclr: 1 reads the self-supervised features: enable "
                            "variable_rate so that train_simclr runs first, or set simclr: 0")
        self.levels, self.simclr, self.operating_points = levels, bool(simclr), levels
        self.conditional, self.joint = bool(conditional), bool(joint)
        self.point_weights = tuple(float(k == levels - 1) if top_only else 2.0 * k + 1 for k in range(levels))
        self.all_layers = tuple(f"level{i}" for i in range(1, levels + 1))
        self.select_point(levels - 1)
        self.finest_stride = finest_stride
        self.pad_multiple = finest_stride * 2 ** (levels - 1)
        # Frozen by construction rather than by requires_grad (CompressAI's net_aux_optimizer wants every
        # parameter trainable): it runs in eval mode, without gradient or with detached weights
        # (:meth:`ssl_features`), so its weights never get a gradient; a submodule, so the checkpoint carries them.
        self.ssl_model = None if ssl_model is None else ssl_model.eval().requires_grad_(True)
        encoder_attention, decoder_attention = PLACEMENTS[attention]
        stem_channels = ssl_model.channels if simclr else N
        self.stem = None if simclr else nn.Sequential(_down(3, N), _down(N, N))
        self.encoder_attention = SelfAttention(stem_channels) if encoder_attention else nn.Identity()
        # stride 4 → finest_stride / 2, then one stride-2 step per coarser level; each level a strided 5×5
        # convolution of its input
        self.pyramid = nn.ModuleList([_to_finest(stem_channels, N, finest_stride)]
                                     + [_down(N, N) for _ in range(levels - 1)])
        self.project = nn.ModuleList([conv(N, M, kernel_size=5, stride=2) for _ in range(levels)])  # finest first
        # level order: every level's, or level 1's alone when the finer ones are conditional
        self.entropy_bottlenecks = nn.ModuleList([EntropyBottleneck(M) for _ in range(1 if conditional else levels)])
        # conditional: level i's means and scales from ŷ_{i−1}, at half its resolution (θ_i, i ≥ 2)
        self.context = nn.ModuleList([nn.Sequential(deconv(M, N, kernel_size=5, stride=2), nn.ReLU(inplace=True),
                                                    conv(N, 2 * M, kernel_size=3, stride=1))
                                      for _ in range(levels - 1 if conditional else 0)])
        self.gaussian_conditional = GaussianConditional(None) if conditional else None
        self.inject = nn.ModuleList([conv(M, N, kernel_size=3, stride=1) for _ in range(levels - 1)])  # θ_2…θ_L
        # trunk: from level 1's stride down to 1, one 2× step each; its stride-4 features may be attended
        steps = (levels - 1) + finest_stride.bit_length() - 1
        self.trunk = nn.ModuleList([nn.Sequential(deconv(M if i == 0 else N, N if i < steps - 1 else 3,
                                                         kernel_size=5, stride=2),
                                                  GDN(N, inverse=True) if i < steps - 1 else nn.Identity())
                                    for i in range(steps)])
        self.decoder_attention = SelfAttention(N) if decoder_attention else nn.Identity()
        # θ_2…θ_L: each level's scale and bias of the trunk's features before every step after the first
        # ((steps − 1) × 2 × N; the first step reads ŷ_1)
        self.modulate = nn.ParameterList([nn.Parameter(torch.stack([torch.ones(steps - 1, N),
                                                                    torch.zeros(steps - 1, N)], 1))
                                          for _ in range(levels - 1)])

    def train(self, mode: bool = True) -> "FeaturePyramidCodec":
        """Train mode for the codec; the self-supervised network stays frozen in eval mode."""
        super().train(mode)
        if self.ssl_model is not None:
            self.ssl_model.eval()
        return self

    def ssl_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen network's features of ``x``, differentiable in ``x`` only (its weights detached)."""
        weights = {name: value.detach() for name, value in self.ssl_model.state_dict(keep_vars=True).items()}
        return torch.func.functional_call(self.ssl_model, weights, (x,))

    # ------------------------------------------------------------------------------------ operating points
    def select_point(self, index: int) -> None:
        """Work at operating point ``index``: its bitstream ``layers`` are levels 1 … index + 1 (0 = the
        coarsest level alone), which every receiver needs."""
        if not 0 <= index < self.levels:
            raise ValueError(f"the pyramid codec has {self.levels} operating points; {index} is out of range")
        self.point = index
        self.layers = self.all_layers[: index + 1]
        self.receivers = {"image": self.layers}

    def layers_for(self, output: str) -> tuple[str, ...]:
        return self.layers

    def task_layer(self) -> str:
        return self.layers[0]

    # ------------------------------------------------------------------------------------ transforms
    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """``φ``: the frozen self-supervised features (simclr) or the learned stem's, both at stride 4."""
        if not self.simclr:
            return self.stem(x)
        with torch.no_grad():
            return self.ssl_model(x)

    def _latents(self, x: torch.Tensor, features: torch.Tensor | None = None,
                 count: int | None = None) -> list[torch.Tensor]:
        """The unquantised latents of the first ``count`` levels (None: the selected point's), coarsest (level 1)
        first; ``features``: the self-supervised features of ``x`` when the caller has them already."""
        phi = features if self.simclr and features is not None else self.input_features(x)
        h = self.encoder_attention(phi)
        scales = []
        for down in self.pyramid:
            h = down(h)
            scales.append(h)  # the finest level's input (stride finest_stride / 2) first
        latents = [project(scale) for project, scale in zip(self.project, scales)][::-1]
        return latents[: self.point + 1 if count is None else count]

    def synthesize(self, latents: dict[str, Latents]) -> torch.Tensor:
        """The hierarchical decoder: ŷ_1 through the shared trunk, each further level added at its resolution."""
        y_hats = [latents[layer].y_hat for layer in self.all_layers if layer in latents]
        return self._synthesize(y_hats).clamp(0, 1)

    def _synthesize(self, y_hats: list[torch.Tensor]) -> torch.Tensor:
        t = y_hats[0]
        for step, block in enumerate(self.trunk):
            if 1 <= step < len(y_hats):  # level step+1 joins at its stride
                t = t + self.inject[step - 1](y_hats[step])
            if len(y_hats) > 1 and step > 0:  # step 0 reads ŷ_1 (M channels) as it is
                scale, bias = self._modulation(step - 1, len(y_hats))
                t = t * scale[:, None, None] + bias[:, None, None]
            if step == len(self.trunk) - 2:  # stride 4
                t = self.decoder_attention(t)
            t = block(t)
        return t

    def _modulation(self, step: int, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel-wise scale and bias before trunk step ``step`` + 1 when ``levels`` levels are decoded: the
        modulations of levels 2…``levels`` applied one after another, composed into one."""
        scale, bias = self.modulate[0][step]
        for modulation in self.modulate[1 : levels - 1]:
            next_scale, next_bias = modulation[step]
            scale, bias = scale * next_scale, bias * next_scale + next_bias
        return scale, bias

    # ------------------------------------------------------------------------------------ entropy models
    def _is_conditional(self, index: int) -> bool:
        """Whether level ``index`` + 1 is coded conditioned on the coarser level (else: its factorized prior)."""
        return self.conditional and index > 0

    def _prior(self, index: int, coarser: torch.Tensor, alone: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means of level ``index`` + 1's Gaussian conditional, from ŷ of the level below; ``alone``:
        each image by itself, as the encoder of one image computes them (bit-identical floats for the coder)."""
        context = self.context[index - 1]
        return (per_image(context, coarser) if alone else context(coarser)).chunk(2, 1)

    def _entropy_model(self, index: int, y: torch.Tensor, coarser: torch.Tensor | None, alone: bool = True) -> tuple:
        """Level ``index`` + 1 through its entropy model: its quantisation proxy (noisy in training), its
        likelihoods, the centre the coder rounds around (the medians, or the predicted means) and the predicted
        scales (None: the factorized prior); ``coarser``, ``alone``: as :meth:`_prior`."""
        if self._is_conditional(index):
            scales, center = self._prior(index, coarser, alone)
            return (*self.gaussian_conditional(y, scales, means=center), center, scales)
        bottleneck = self.entropy_bottlenecks[index]
        return (*bottleneck(y), bottleneck._get_medians(), None)

    # ------------------------------------------------------------------------------------ contract
    def forward(self, x: torch.Tensor, quantization: str = "noise") -> dict:
        """Training pass at the selected point: ``x_hat``, the likelihoods of its levels, and when the loss has
        a perceptual term (:attr:`perceptual`) the self-supervised network's features of x and x̂. A ``joint``
        codec in training mode passes every point from one encoder pass: ``points``, that output for each point,
        the finest's also at the top."""
        features = None
        if self.ssl_model is not None and (self.perceptual or self.simclr):  # once: encoder input, perceptual target
            with torch.no_grad():
                features = self.ssl_model(x)
        joint = self.joint and self.training
        y_hats, likelihoods = [], {}
        for i, y in enumerate(self._latents(x, features, self.levels if joint else None)):
            y_hat, y_likelihoods, center, _ = self._entropy_model(i, y, y_hats[-1] if y_hats else None, alone=False)
            likelihoods[self.all_layers[i]] = {"y": y_likelihoods}
            if quantization == "ste":  # the coder rounds around the medians or the predicted means
                y_hat = quantize_ste(y - center) + center
            y_hats.append(y_hat)
        if not joint:
            return self._output(y_hats, likelihoods, features)
        points = [self._output(y_hats[: k + 1], {layer: likelihoods[layer] for layer in self.all_layers[: k + 1]},
                               features) for k in range(self.levels)]
        return {**points[-1], "points": points}

    def _output(self, y_hats: list[torch.Tensor], likelihoods: dict, features: torch.Tensor | None) -> dict:
        """The training output of the point that decodes ``y_hats`` (see :meth:`forward`)."""
        out = {"x_hat": self._synthesize(y_hats), "likelihoods": likelihoods}
        if self.perceptual and features is not None:
            out["features"], out["features_hat"] = features, self.ssl_features(out["x_hat"])
        return out

    def analyze(self, x: torch.Tensor) -> dict:
        out: dict = {"latents": {}, "likelihoods": {}}
        y_hat = None
        for i, y in enumerate(self._latents(x)):
            layer = self.all_layers[i]
            _, likelihoods, center, scales = self._entropy_model(i, y, y_hat)
            y_hat = quantize_ste(y - center) + center
            out["latents"][layer] = Latents(y_hat, scales)
            out["likelihoods"][layer] = {"y": likelihoods}
        return out

    def encode(self, x: torch.Tensor) -> dict[str, list[bytes]]:
        strings, y_hat = {}, None
        for i, y in enumerate(self._latents(x)):
            if self._is_conditional(i):
                scales, means = self._prior(i, y_hat)
                indexes = self.gaussian_conditional.build_indexes(scales)
                strings[self.all_layers[i]] = [self.gaussian_conditional.compress(y, indexes, means=means)[0]]
                y_hat = self.gaussian_conditional.quantize(y, "dequantize", means)  # what the decoder will hold
            else:
                bottleneck = self.entropy_bottlenecks[i]
                strings[self.all_layers[i]] = [bottleneck.compress(y)[0]]
                y_hat = bottleneck.quantize(y, "dequantize", bottleneck._get_medians())
        return strings

    def decode(self, strings: dict[str, list[list[bytes]]], padded_size: tuple[int, int],
               pixels: bool = True) -> Decoded:
        latents, y_hat = {}, None
        for i, layer in enumerate(self.all_layers):
            if layer not in strings:
                break  # a receiver holds a prefix of the levels
            if self._is_conditional(i):
                scales, means = self._prior(i, y_hat)
                indexes = self.gaussian_conditional.build_indexes(scales)
                latents[layer] = Latents(self.gaussian_conditional.decompress(strings[layer][0], indexes,
                                                                              means=means), scales)
            else:
                stride = self.finest_stride * 2 ** (self.levels - 1 - i)
                shape = (padded_size[0] // stride, padded_size[1] // stride)
                latents[layer] = Latents(self.entropy_bottlenecks[i].decompress(strings[layer][0], shape), None)
            y_hat = latents[layer].y_hat
        if not latents:
            raise ValueError("a pyramid bitstream needs at least its first level")
        return Decoded(self.synthesize(latents) if pixels else None, latents)

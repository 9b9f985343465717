"""Scalable coding for humans and machines with disentangled latents (seed 002).

Özyılkan, Ulhaq, Choi, Racapé, "Learned Disentangled Latent Representations
for Scalable Image Coding for Humans and Machines", DCC 2023; built on Ballé
et al.'s scale hyperprior (ICLR 2018) from CompressAI's layers and latent
codecs (GDN, ``EntropyBottleneck``, ``GaussianConditional``,
``HyperpriorLatentCodec``).

Two latents, each with its own hyperprior and its own bitstream layer:

- **base** ``ŷ_b = Q(g_a,b([x↓, f]))``: from the image resized (bicubic) to the
  resolution of the task features ``f = front(x)`` — the first layers of the
  frozen task model — concatenated with them. A machine receiver downloads
  it alone: ``g_s,b(ŷ_b)`` reconstructs ``f̂`` and the rest of the task model
  (``back``) runs on it (:meth:`ScalableHyperprior.task_outputs`).
- **enhancement** ``ŷ_e = Q(g_a,e(x))``: from the image alone. A person's
  receiver downloads both: ``x̂ = g_s,e([ŷ_b, ŷ_e])``.

The training loss is the paper's equation 2,
``R_b + R_e + λ_task·D(f, f̂) + λ_img·D(x, x̂)``
(:class:`taskcodec.losses.ScalableLoss`). Both latents have stride 16 (the
hyper-latents 64); the paper's Table 1 layers are 5×5 convolutions with GDN
between them: four stride-2 layers for the enhancement transforms, and for the
base transforms as many stride-2 layers as take the features' stride to 16,
the others stride 1 (features at stride 4: s1, s1, s2, s2, as in the paper).

The frozen task model is part of the codec (its weights are in the codec's
checkpoint, :mod:`taskcodec.codecs.checkpoint`), so the encoder and a task
receiver's decoder are self-contained. It must offer ``front(x)`` → features
and ``back(features)`` → task outputs; its feature channels and stride are read
from one probe of ``front``.

Everything but the analysis — the frozen task model, the feature synthesis
``g_s,b``, the image synthesis ``g_s,e``, the two hyperpriors, training, coding
and decoding — is :class:`ScalableCodec`, which the paper's baseline, Choi &
Bajić's latent-space scalable codec (:mod:`taskcodec.codecs.choi2022`), shares.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import GaussianConditionalLatentCodec, HyperLatentCodec, HyperpriorLatentCodec
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from compressai.ops import quantize_ste
from torch import nn

from taskcodec.codecs.compressai_codecs import per_image
from taskcodec.codecs.contract import Decoded, LayeredCodec, Latents
from taskcodec.codecs.registry import register_codec
from taskcodec.errors import UserError

#: spatial stride of both latents (the hyper-latents have 4× more)
LATENT_STRIDE = 16


def transform(channels: list[int], strides: list[int], inverse: bool) -> nn.Sequential:
    """5×5 (de)convolutions ``channels[i] → channels[i+1]`` with the given strides and (inverse) GDN between."""
    layers: list[nn.Module] = []
    for i, stride in enumerate(strides):
        layer = deconv if inverse else conv
        layers.append(layer(channels[i], channels[i + 1], kernel_size=5, stride=stride))
        if i < len(strides) - 1:
            layers.append(GDN(channels[i + 1], inverse=inverse))
    return nn.Sequential(*layers)


def _hyperprior(N: int, M: int) -> HyperpriorLatentCodec:
    """A scale hyperprior for an M-channel latent (Ballé et al. 2018's h_a/h_s with N channels)."""
    h_a = nn.Sequential(conv(M, N, stride=1, kernel_size=3), nn.ReLU(inplace=True), conv(N, N),
                        nn.ReLU(inplace=True), conv(N, N))
    h_s = nn.Sequential(deconv(N, N), nn.ReLU(inplace=True), deconv(N, N), nn.ReLU(inplace=True),
                        conv(N, M, stride=1, kernel_size=3), nn.ReLU(inplace=True))
    return HyperpriorLatentCodec(latent_codec={
        "y": GaussianConditionalLatentCodec(chunks=("scales",)),
        "hyper": HyperLatentCodec(EntropyBottleneck(N), h_a, h_s),
    })


def _feature_geometry(task_model: nn.Module) -> tuple[int, int]:
    """(channels, stride) of the task model's features ``front(x)``, from one probe on a 64×64 image."""
    side = 64
    with torch.no_grad():
        features = task_model.front(torch.zeros(1, 3, side, side, device=next(task_model.parameters()).device))
    stride = side // features.shape[-1]
    if features.shape[-1] * stride != side or features.shape[-2] != features.shape[-1]:
        raise UserError(f"the task model's front maps 64×64 images to {tuple(features.shape[-2:])} features, "
                        "not an integer stride; choose another split point")
    if stride > LATENT_STRIDE or stride & (stride - 1):
        raise UserError(f"the task model's front has stride {stride}; the scalable codec needs a power of two up to "
                        f"{LATENT_STRIDE}: choose an earlier split point")
    return features.shape[1], stride


def _feature_strides(feature_stride: int) -> list[int]:
    """Strides of the four layers between the features' resolution and the latents' (stride 1 first)."""
    downs = int(math.log2(LATENT_STRIDE // feature_stride))
    return [1] * (4 - downs) + [2] * downs


class ScalableCodec(CompressionModel, LayeredCodec):
    """Two latents on a frozen task model: the base one for the task, both for the image (see the module docstring).

    Builds what both designs of seed 002 share: ``g_s_base`` (the base latent → the task features at the
    resolution of ``front``), ``g_s_enh`` ([base, enhancement] → the image) and a scale hyperprior per layer.
    A subclass builds its analysis and implements :meth:`_latents`. ``N``: channels of the transforms and
    hyperpriors; ``M_base``/``M_enh``: channels of the base and enhancement latents (the paper's
    configuration tuples); ``task_model``: the frozen task model (``front``/``back``), given by the stage
    that builds the codec, not a sweep hyperparameter.
    """

    layers = ("base", "enh")
    receivers = {"image": ("base", "enh"), "task": ("base",)}
    pad_multiple = 4 * LATENT_STRIDE
    needs_task_model = True

    def __init__(self, N: int, M_base: int, M_enh: int, task_model: nn.Module | None = None):
        super().__init__()
        if task_model is None:
            raise UserError(f"codec {type(self).__name__} is built on a task model: add its task to tasks "
                            "and name it in scalable.task, so that train_task runs first")
        # Frozen by construction rather than by requires_grad (CompressAI's net_aux_optimizer wants every
        # parameter trainable): it runs in eval mode and without gradient, so its weights never get one and
        # the optimizers leave them as they are.
        self.task_model = task_model.eval()
        self.feature_channels, self.feature_stride = _feature_geometry(task_model)
        self.g_s_base = transform([M_base, N, N, N, self.feature_channels],
                                  _feature_strides(self.feature_stride)[::-1], inverse=True)
        self.g_s_enh = transform([M_base + M_enh, N, N, N, 3], [2, 2, 2, 2], inverse=True)
        self.hyper = nn.ModuleDict({"base": _hyperprior(N, M_base), "enh": _hyperprior(N, M_enh)})

    def train(self, mode: bool = True) -> "ScalableCodec":
        """Train mode for the codec; the task model stays frozen in eval mode (its batch norms included)."""
        super().train(mode)
        self.task_model.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen task model's features ``f = front(x)`` (no gradient)."""
        with torch.no_grad():
            return self.task_model.front(x)

    def _latents(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The unquantised latents by layer, and the task features when the analysis reads them (else None)."""
        raise NotImplementedError

    def _layer(self, layer: str, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(ŷ with noise, σ̂, likelihoods) of one layer in training."""
        codec = self.hyper[layer]
        hyper = codec["hyper"](y)
        out = codec["y"](y, hyper["params"])
        return out["y_hat"], hyper["params"], {"y": out["likelihoods"]["y"], "z": hyper["likelihoods"]["z"]}

    def forward(self, x: torch.Tensor, quantization: str = "noise") -> dict:
        """Training pass: ``x_hat``, ``features_hat`` (f̂ from the base layer), ``features`` (f) and the
        likelihoods per layer; ``quantization="ste"`` feeds the syntheses rounded latents (straight-through)."""
        latents, f = self._latents(x)
        f = self.features(x) if f is None else f
        y_hat, likelihoods = {}, {}
        for layer, y in latents.items():
            y_hat[layer], _, likelihoods[layer] = self._layer(layer, y)
            if quantization == "ste":  # zero-mean Gaussians: the coder rounds y itself
                y_hat[layer] = quantize_ste(y)
        return {"x_hat": self.g_s_enh(torch.cat([y_hat["base"], y_hat["enh"]], dim=1)),
                "features_hat": self.g_s_base(y_hat["base"]), "features": f, "likelihoods": likelihoods}

    def analyze(self, x: torch.Tensor) -> dict:
        latents, _ = self._latents(x)
        out: dict = {"latents": {}, "likelihoods": {}}
        for layer, y in latents.items():
            _, scales, out["likelihoods"][layer] = self._layer(layer, y)
            out["latents"][layer] = Latents(quantize_ste(y), scales)
        return out

    def encode(self, x: torch.Tensor) -> dict[str, list[bytes]]:
        latents, _ = self._latents(x)
        return {layer: [strings[0] for strings in self.hyper[layer].compress(y)["strings"]]
                for layer, y in latents.items()}

    def decode(self, strings: dict[str, list[list[bytes]]], padded_size: tuple[int, int],
               pixels: bool = True) -> Decoded:
        z_shape = (padded_size[0] // self.pad_multiple, padded_size[1] // self.pad_multiple)
        latents = {}
        for layer in self.layers:
            if layer not in strings:
                continue
            y_strings, z_strings = strings[layer]
            hyper, gaussian = self.hyper[layer]["hyper"], self.hyper[layer]["y"].gaussian_conditional
            z_hat = hyper.entropy_bottleneck.decompress(z_strings, z_shape)
            scales = per_image(hyper.h_s, z_hat)
            y_hat = gaussian.decompress(y_strings, gaussian.build_indexes(scales), z_hat.dtype)
            latents[layer] = Latents(y_hat, scales)
        x_hat = self.synthesize(latents) if pixels and set(self.layers) <= set(latents) else None
        return Decoded(x_hat, latents)

    def synthesize(self, latents: dict[str, Latents]) -> torch.Tensor:
        return self.g_s_enh(torch.cat([latents["base"].y_hat, latents["enh"].y_hat], dim=1)).clamp(0, 1)

    def task_outputs(self, latents: dict[str, Latents]) -> torch.Tensor:
        """The frozen task model's outputs from the base layer alone: ``back(g_s,b(ŷ_b))``."""
        with torch.no_grad():
            return self.task_model.back(self.g_s_base(latents["base"].y_hat))


@register_codec("scalable-hyperprior")
class ScalableHyperprior(ScalableCodec):
    """Özyılkan et al.'s analysis: the base latent from the resized image and the task features, the
    enhancement latent from the image alone (see the module docstring and :class:`ScalableCodec`)."""

    def __init__(self, N: int, M_base: int, M_enh: int, task_model: nn.Module | None = None):
        super().__init__(N, M_base, M_enh, task_model)
        self.g_a_base = transform([3 + self.feature_channels, N, N, N, M_base],
                                  _feature_strides(self.feature_stride), inverse=False)
        self.g_a_enh = transform([3, N, N, N, M_enh], [2, 2, 2, 2], inverse=False)

    def _latents(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        f = self.features(x)
        resized = F.interpolate(x, size=f.shape[-2:], mode="bicubic", align_corners=False)
        return {"base": self.g_a_base(torch.cat([resized, f], dim=1)), "enh": self.g_a_enh(x)}, f

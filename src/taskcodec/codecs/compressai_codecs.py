"""CompressAI's image codecs under the codec contract, one adapter per model family.

Each registered CompressAI architecture (``compressai.zoo.image.model_architectures``)
becomes a subclass of its own class and of the family's adapter, so its weights,
state-dict keys and bitstreams are CompressAI's, unchanged: the adapters only
call the model's own ``compress``/``decompress``, transforms and entropy models.
All are single-layer codecs (layer ``"main"``).

- Factorized prior (Ballé et al., ICLR 2017): ŷ from the entropy bottleneck; no σ̂.
- Scale hyperprior (Ballé et al., ICLR 2018) and mean-scale hyperprior (Minnen
  et al., NeurIPS 2018): ŷ and σ̂ from the hyper-decoder. A batch of bitstreams
  is decoded with one ``decompress`` call per entropy model, while every value
  that selects a CDF (the hyper-decoder's σ̂) is computed image by image, exactly
  as the encoder computed it, so each bitstream still decodes alone and to the
  same latents (float rounding of a convolution can change with the batch).
- Autoregressive context models (Minnen et al. 2018; Cheng et al., CVPR 2020)
  decode ŷ sequentially inside their own ``decompress``: pixels only, one image
  at a time.
"""

from __future__ import annotations

import torch
from compressai.models import (
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from compressai.ops import quantize_ste
from compressai.zoo.image import model_architectures

from taskcodec.codecs.contract import Decoded, LayeredCodec, Latents


def per_image(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``module`` applied to each image alone, as the encoder applies it (bit-identical floats)."""
    return torch.cat([module(image) for image in batch.split(1)])


class CompressAICodec(LayeredCodec):
    """Adapter shared by the families: one layer holding CompressAI's strings, forward per layer."""

    #: spatial downsampling of the latent whose shape ``decompress`` needs (z for hyperpriors)
    shape_divisor = 64

    def forward(self, x: torch.Tensor, quantization: str = "noise") -> dict:
        if quantization == "ste":  # noisy likelihoods, rounded decoder input (straight-through gradient)
            analyzed = self.analyze(x)
            return {"x_hat": self.g_s(analyzed["latents"]["main"].y_hat), "likelihoods": analyzed["likelihoods"]}
        out = super().forward(x)
        return {"x_hat": out["x_hat"], "likelihoods": {"main": out["likelihoods"]}}

    def encode(self, x: torch.Tensor) -> dict[str, list[bytes]]:
        return {"main": [per_model[0] for per_model in self.compress(x)["strings"]]}

    def decode(self, strings: dict[str, list[list[bytes]]], padded_size: tuple[int, int],
               pixels: bool = True) -> Decoded:
        shape = (padded_size[0] // self.shape_divisor, padded_size[1] // self.shape_divisor)
        latents = {"main": self.decode_latents(strings["main"], shape)}
        return Decoded(self.synthesize(latents) if pixels else None, latents)

    def synthesize(self, latents: dict[str, Latents]) -> torch.Tensor:
        return self.g_s(latents["main"].y_hat).clamp_(0, 1)

    def decode_latents(self, strings: list[list[bytes]], shape: tuple[int, int]) -> Latents:
        raise NotImplementedError


class FactorizedFamily(CompressAICodec):
    shape_divisor = 16

    def decode_latents(self, strings, shape):
        return Latents(self.entropy_bottleneck.decompress(strings[0], shape), None)

    def analyze(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        _, y_likelihoods = self.entropy_bottleneck(y)
        medians = self.entropy_bottleneck._get_medians()  # the coder rounds around them
        return {"latents": {"main": Latents(quantize_ste(y - medians) + medians, None)},
                "likelihoods": {"main": {"y": y_likelihoods}}}


class ScaleHyperpriorFamily(CompressAICodec):
    def decode_latents(self, strings, shape):
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat = per_image(self.h_s, z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        return Latents(self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype), scales_hat)

    def analyze(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(torch.abs(y)))
        scales_hat = self.h_s(z_hat)
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat)
        return {"latents": {"main": Latents(quantize_ste(y), scales_hat)},
                "likelihoods": {"main": {"y": y_likelihoods, "z": z_likelihoods}}}


class MeanScaleHyperpriorFamily(CompressAICodec):
    def decode_latents(self, strings, shape):
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat, means_hat = per_image(self.h_s, z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means=means_hat)
        return Latents(y_hat, scales_hat)

    def analyze(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        return {"latents": {"main": Latents(quantize_ste(y - means_hat) + means_hat, scales_hat)},
                "likelihoods": {"main": {"y": y_likelihoods, "z": z_likelihoods}}}


class AutoregressiveFamily(CompressAICodec):
    synthesize = LayeredCodec.synthesize  # ŷ is decoded inside decompress, sequentially

    def decode(self, strings, padded_size, pixels=True):
        shape = (padded_size[0] // self.shape_divisor, padded_size[1] // self.shape_divisor)
        images = list(zip(*strings["main"]))
        x_hat = torch.cat([self.decompress([[s] for s in image], shape)["x_hat"] for image in images])
        return Decoded(x_hat if pixels else None, None)


#: CompressAI model class → its family adapter, looked up along the class's MRO (the autoregressive
#: models subclass MeanScaleHyperprior, so their entry must come first)
FAMILIES: dict[type, type[CompressAICodec]] = {
    JointAutoregressiveHierarchicalPriors: AutoregressiveFamily,
    MeanScaleHyperprior: MeanScaleHyperpriorFamily,
    ScaleHyperprior: ScaleHyperpriorFamily,
    FactorizedPrior: FactorizedFamily,
}


def adapt(model_class: type) -> type:
    """``model_class`` with its family's contract methods (same constructor, weights and bitstreams)."""
    family = next(FAMILIES[cls] for cls in model_class.__mro__ if cls in FAMILIES)
    return type(model_class.__name__, (family, model_class), {"__doc__": model_class.__doc__})


#: CompressAI's architectures under CompressAI's names, each adapted to the contract
COMPRESSAI_CODECS: dict[str, type] = {name: adapt(cls) for name, cls in model_architectures.items()}

"""Choi & Bajić's latent-space scalable codec, the baseline of seed 002, on the scalable codec's base architecture.

H. Choi and I. V. Bajić, "Scalable Image Coding for Humans and Machines",
IEEE Trans. Image Processing 31, pp. 2739–2754, 2022. Seed 002 (Özyılkan et
al., DCC 2023, Section 2 and Fig. 1(b)) compares with it "reimplemented on top
of a comparable base architecture with its original configuration"; so is it
here, on Ballé et al.'s scale hyperprior (ICLR 2018) like
:class:`taskcodec.codecs.scalable.ScalableHyperprior`, from which it differs
only in its analysis:

- one analysis transform ``y = g_a(x)`` from the image alone (the enhancement
  analysis of the scalable codec: four 5×5 stride-2 convolutions with GDN,
  stride 16) with ``M_base + M_enh`` channels, split channel-wise into the
  **base** latent ``Y1`` (the first ``M_base`` channels) and the
  **enhancement** latent ``Y2`` (the others): the task model takes no part in
  the encoder;
- the **latent-space transform** ``f̂ = g_s,b(Ŷ1)`` from the base latent alone
  to the task features at the resolution of ``front`` (the scalable codec's
  feature synthesis: 5×5 deconvolutions with inverse GDN), on which a machine
  receiver runs the rest of the frozen task model (``back``);
- the image ``x̂ = g_s,e([Ŷ1, Ŷ2])`` from both;
- a scale hyperprior per part, so that each part is a self-contained layer of
  the bitstream (a machine receiver downloads the base layer only).

Choi & Bajić built theirs on Cheng et al.'s architecture (CVPR 2020: residual
blocks, a context model, one hyper-latent for all parts) and a latent-space
transform of residual and sub-pixel upsampling blocks; CompressAI-Vision's
``SICHumansMachines`` model class has that layout, with the base part the
first channels of the latent and 128 base + 64 enhancement channels in its
two-layer configuration. The training loss is the scalable codec's, seed 002's
equation 2 (:class:`taskcodec.losses.ScalableLoss`).
"""

from __future__ import annotations

import torch
from torch import nn

from taskcodec.codecs.registry import register_codec
from taskcodec.codecs.scalable import ScalableCodec, transform


@register_codec("choi2022-scalable")
class Choi2022Scalable(ScalableCodec):
    """One analysis, its latent split into base ``Y1`` and enhancement ``Y2`` channels (see the module docstring).

    ``N``: channels of the transforms and hyperpriors; ``M_base``/``M_enh``: channels of ``Y1`` and ``Y2``;
    ``task_model``: the frozen task model (``front``/``back``), given by the stage that builds the codec. Its
    ``g_s_base`` is Choi & Bajić's latent-space transform.
    """

    def __init__(self, N: int, M_base: int, M_enh: int, task_model: nn.Module | None = None):
        super().__init__(N, M_base, M_enh, task_model)
        self.split = (M_base, M_enh)
        self.g_a = transform([3, N, N, N, M_base + M_enh], [2, 2, 2, 2], inverse=False)

    def _latents(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], None]:
        base, enh = torch.split(self.g_a(x), self.split, dim=1)
        return {"base": base, "enh": enh}, None

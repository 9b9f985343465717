"""Classifiers that read the compressed-domain latents ŷ and scales σ̂, by ``latent_classifier.model.arch``.

- ``cresnet``: the compressed-domain ResNet of Torfason et al., "Towards Image Understanding
  from Deep Compression without Decoding", ICLR 2018, as used by seed 004 (Gupta et al.,
  "Learning-Based Compression for Machines", §2.3 and Table 2): no ``conv1`` (the latents are
  already 8–16× downsampled), one bottleneck block ``conv_2x`` per input — ŷ and σ̂ enter two
  separate branches — whose outputs are concatenated and run through the bottleneck stages
  ``conv_3x``–``conv_5x``, global average pooling and a fully connected layer. Table 2's
  cResNet-39 is ``width: 128, blocks: [4, 6, 3]``; smaller values give the scaled-down models
  that train in seconds on a CPU.

A classifier is added with one class and one ``@register_latent_classifier("name")``; its
constructor takes ``(model_params, latent_channels, num_classes)`` and its forward
``(y_hat, scales_hat)`` (each N×M×h×w) returns logits N×K.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from taskcodec.errors import UserError
from taskcodec.registration import registrar

LATENT_CLASSIFIERS: dict[str, Callable[[dict[str, Any], int, int], nn.Module]] = {}

#: lower bound on the Gaussian scales (CompressAI's ``GaussianConditional`` default ``scale_bound``);
#: σ̂ is clamped to it before the logarithm
SCALE_BOUND = 0.11


#: class decorator adding a latent classifier to :data:`LATENT_CLASSIFIERS`
register_latent_classifier = registrar(LATENT_CLASSIFIERS, "latent classifier")


def build_latent_classifier(model_params: dict[str, Any], latent_channels: int, num_classes: int) -> nn.Module:
    """Instantiate ``model_params["arch"]`` for ``latent_channels`` (M) input channels and ``num_classes``."""
    arch = model_params["arch"]
    if arch not in LATENT_CLASSIFIERS:
        raise UserError(f"latent_classifier.model.arch '{arch}' is unknown; known: {', '.join(sorted(LATENT_CLASSIFIERS))}")
    return LATENT_CLASSIFIERS[arch](model_params, latent_channels, num_classes)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand, with batch norm and a projection shortcut when shapes change."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels), nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(mid_channels), nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _stage(in_channels: int, mid_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*(Bottleneck(in_channels if i == 0 else out_channels, mid_channels, out_channels,
                                      stride if i == 0 else 1) for i in range(blocks)))


@register_latent_classifier("cresnet")
class CResNet(nn.Module):
    """Two-branch compressed-domain ResNet (Torfason et al. 2018; seed 004, Table 2), scaled by ``width``.

    With ``w = width``: each branch is a bottleneck ``[1×1, w/4; 3×3, w/4; 1×1, w]``; the
    concatenated 2w channels pass ``conv_3x`` (``[w, w, 4w] × blocks[0]``, stride 1),
    ``conv_4x`` (``[2w, 2w, 8w] × blocks[1]``, stride 2) and ``conv_5x`` (``[4w, 4w, 16w] ×
    blocks[2]``, stride 2). ŷ is standardised by a batch norm; σ̂ enters as log σ̂ (clamped to
    CompressAI's scale bound), also batch-normalised. Padded convolutions keep 4×4 latents valid.
    """

    def __init__(self, model_params: dict[str, Any], latent_channels: int, num_classes: int):
        super().__init__()
        width, blocks = model_params["width"], model_params["blocks"]
        if width < 4 or width % 4 or len(blocks) != 3 or min(blocks) < 1:
            raise UserError(f"latent_classifier.model needs width a multiple of 4 and blocks [conv_3x, conv_4x, conv_5x] "
                            f">= 1, got width {width} and blocks {blocks}")
        self.y_norm = nn.BatchNorm2d(latent_channels)
        self.scales_norm = nn.BatchNorm2d(latent_channels)
        self.y_branch = Bottleneck(latent_channels, width // 4, width, 1)
        self.scales_branch = Bottleneck(latent_channels, width // 4, width, 1)
        self.conv3 = _stage(2 * width, width, 4 * width, blocks[0], 1)
        self.conv4 = _stage(4 * width, 2 * width, 8 * width, blocks[1], 2)
        self.conv5 = _stage(8 * width, 4 * width, 16 * width, blocks[2], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, y_hat: torch.Tensor, scales_hat: torch.Tensor) -> torch.Tensor:
        log_scales = torch.log(scales_hat.clamp_min(SCALE_BOUND))
        x = torch.cat([self.y_branch(self.y_norm(y_hat)), self.scales_branch(self.scales_norm(log_scales))], dim=1)
        return self.fc(self.pool(self.conv5(self.conv4(self.conv3(x)))).flatten(1))

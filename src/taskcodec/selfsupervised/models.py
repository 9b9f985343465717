"""SimCLR's networks: a ResNet trunk, the projection head, and the frozen group-1 feature extractor.

SimCLR (Chen et al., ICML 2020, §2.1) trains a base encoder f (a ResNet up to its global pooling, the
representation h) with a small projection head g (a two-layer MLP, z = W2·ReLU(W1·h)) on which the contrastive
loss acts; g is discarded after training. ``simclr.model`` picks the trunk:

- ``resnet-small``: an ImageNet-style ResNet sized for CPU (He et al., "Deep Residual Learning for Image
  Recognition", CVPR 2016): a 3×3 stride-2 ``conv1`` with ``bn1``/``relu``, a 3×3 stride-2 ``maxpool``, then stages
  ``layer1`` … ``layerK`` of basic blocks with ``widths[i]`` channels and ``blocks[i]`` blocks (every stage after
  the first halves the resolution), global average pooling;
- ``resnet50``: torchvision's ResNet-50 without its classifier (``fc`` is an identity), the network of seed 001.

Both use torchvision's module names, so the *group-1* features of seed 001 (Sinha et al., §3.1: "We extract
group 1 ResNet-50 features") are ``layer1(maxpool(relu(bn1(conv1(x)))))`` in either: stride 4, ``widths[0]``
channels (ResNet-50: 256). :class:`FeatureExtractor` is that part, frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from taskcodec import artifacts
from taskcodec.errors import UserError, shown_path
from taskcodec.tasks.models import BasicBlock, Normalize

#: the trunks of ``simclr.model``
MODELS = ("resnet-small", "resnet50")
#: the downsampling of the group-1 features (conv1 and maxpool halve the resolution each)
GROUP1_STRIDE = 4


class ResNetSmall(nn.Module):
    """An ImageNet-style ResNet for small images (see the module docstring); ``forward`` gives the pooled
    representation h (B×``widths[-1]``)."""

    def __init__(self, widths: list[int], blocks: list[int]):
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise UserError(f"simclr.widths {widths} and simclr.blocks {blocks} must be non-empty lists of one length")
        self.conv1 = nn.Conv2d(3, widths[0], 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks), start=1):
            stride = 1 if index == 1 else 2
            layers = [BasicBlock(in_channels if i == 0 else width, width, stride if i == 0 else 1)
                      for i in range(count)]
            self.add_module(f"layer{index}", nn.Sequential(*layers))
            in_channels = width
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.avgpool(x).flatten(1)


def build_trunk(params: dict[str, Any]) -> nn.Module:
    """The base encoder f of ``params["model"]``, randomly initialised; ``out_features`` is the size of h."""
    if params["model"] == "resnet-small":
        return ResNetSmall(params["widths"], params["blocks"])
    if params["model"] == "resnet50":
        import torchvision

        trunk = torchvision.models.resnet50(weights=None)
        trunk.out_features = trunk.fc.in_features
        trunk.fc = nn.Identity()
        return trunk
    raise UserError(f"simclr.model '{params['model']}' is unknown; use one of {', '.join(MODELS)}")


class SimCLR(nn.Module):
    """Base encoder f and projection head g: ``representation(x)`` is h, ``forward(x)`` is z = g(h).

    Inputs are float images in [0, 1] (B×3×H×W); with ``params["normalize"]`` they are first standardised with
    the ImageNet statistics (what torchvision-trained weights expect; SimCLR's own weights take [0, 1] images).
    """

    def __init__(self, params: dict[str, Any]):
        super().__init__()
        self.normalize = Normalize() if params["normalize"] else nn.Identity()
        self.trunk = build_trunk(params)
        width = self.trunk.out_features
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, params["projection_dim"]))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))


def build_simclr(params: dict[str, Any]) -> SimCLR:
    """A :class:`SimCLR` network of the ``simclr`` params, its trunk initialised from ``params["weights"]`` if set."""
    network = SimCLR(params)
    if params["weights"] is not None:
        load_trunk_weights(network.trunk, params["weights"], params["model"])
    return network


def group1_channels(trunk: nn.Module) -> int:
    """The channels of a trunk's group-1 features: those of ``layer1``'s last convolution (a block's, or its
    projection shortcut's)."""
    return [m for m in trunk.layer1.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class FeatureExtractor(nn.Module):
    """The frozen group-1 features of a SimCLR network: float images B×3×H×W in [0, 1] → B×``channels``×⌈H/4⌉×⌈W/4⌉.

    Its parameters do not require gradients and it stays in eval mode (``train()`` does not switch it, so the batch
    norms keep their statistics inside a codec that trains), but it is differentiable with respect to its input:
    a codec's perceptual term can compare the features of x and x̂ through it (seed 001 uses VGG-19 features there;
    these need no download). ``stride`` is 4; ``channels`` is ``widths[0]`` (``resnet-small``) or 256 (ResNet-50).
    """

    stride = GROUP1_STRIDE

    def __init__(self, network: SimCLR):
        super().__init__()
        trunk = network.trunk
        self.normalize = network.normalize
        self.conv1, self.bn1, self.relu, self.maxpool, self.layer1 = (
            trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool, trunk.layer1)
        self.channels = group1_channels(trunk)
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x))))))


def _weights_hint(model: str) -> str:
    return ("use a torchvision ResNet-50 state dict (keys conv1.weight, layer1.0.conv1.weight, …; fc.* is ignored)"
            if model == "resnet50" else "use a state dict of a resnet-small trunk of the same widths and blocks "
            "(e.g. another train_simclr model.pt)")


def load_trunk_weights(trunk: nn.Module, path: str | Path, model: str) -> None:
    """Load a local weight file into ``trunk``: a state dict (plain, or under ``state_dict``, as a taskcodec
    checkpoint or converted SimCLR weights hold it). Prefixes ``module.`` and ``trunk.`` are dropped, and so are
    the classifier (``fc.*``) and projection-head (``head.*``) tensors; every other tensor must fit the trunk.
    A missing or unfitting file is a :class:`UserError` naming it. Nothing is downloaded."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"simclr.weights {shown_path(path)} does not exist; put the {model} weights there (a state "
                        "dict .pth file: nothing is downloaded) or set simclr.weights to null to train from scratch")
    try:
        payload = artifacts.load_checkpoint(path, map_location="cpu")
    except UserError as err:
        raise UserError(f"simclr.weights: {err}") from None
    state = payload.get("state_dict", payload)
    if not isinstance(state, dict):
        raise UserError(f"simclr.weights {shown_path(path)} holds no state dict; {_weights_hint(model)}")
    state = {key.removeprefix("module.").removeprefix("trunk."): value for key, value in state.items()
             if not key.removeprefix("module.").startswith(("fc.", "head."))}
    expected = trunk.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise UserError(f"simclr.weights {shown_path(path)} has no '{key}', so it does not hold simclr.model "
                            f"{model}; {_weights_hint(model)}")
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            shape = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else type(state[key]).__name__
            raise UserError(f"simclr.weights {shown_path(path)} has '{key}' of shape {shape} but simclr.model {model} "
                            f"needs {tuple(value.shape)}; {_weights_hint(model)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise UserError(f"simclr.weights {shown_path(path)} has '{unexpected[0]}', which simclr.model {model} lacks; "
                        f"{_weights_hint(model)}")
    trunk.load_state_dict(state)

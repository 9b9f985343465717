"""Pixel-domain task models, by the names ``tasks.<task>.model.arch`` uses.

Every model takes float images in [0, 1] (N×3×H×W) and returns logits N×K;
input normalisation happens inside the model.

- ``resnet-small``: a CIFAR-style residual network (He et al., "Deep Residual
  Learning for Image Recognition", CVPR 2016, Section 4.2) with configurable
  stage widths and blocks per stage; its modules are named ``stem``,
  ``stage1`` … ``stageK``, ``pool`` and ``fc``, so ``tasks.<task>.features.layer``
  can pick one.
- any other name is a torchvision classification model
  (``torchvision.models.get_model(name, weights=None, num_classes=K)``), with
  torchvision's own module names (e.g. ``layer2`` for a ResNet).

A project model is added with one class and one ``@register_task_model("name")``;
its constructor takes ``(model_params, num_classes)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from taskcodec import artifacts
from taskcodec.errors import UserError
from taskcodec.registration import registrar

#: ImageNet channel statistics, the usual input normalisation of torchvision models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TASK_MODELS: dict[str, Callable[[dict[str, Any], int], nn.Module]] = {}


#: class decorator adding a task model to :data:`TASK_MODELS`
register_task_model = registrar(TASK_MODELS, "task model")


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Normalize(nn.Module):
    """Map [0, 1] images to ImageNet-standardised inputs (fixed buffers, not saved in the state dict)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@register_task_model("resnet-small")
class ResNetSmall(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, §4.2): 3×3 stem, stages of basic blocks, global pooling, fc.

    ``widths[i]`` channels and ``blocks[i]`` blocks in stage ``i + 1``; every stage after the
    first halves the resolution. ``stem_stride`` 1 keeps the input resolution (CIFAR's 32×32);
    2 halves it first, as the ImageNet ResNets' stem does, which quarters the cost on larger images.
    ``split_stage`` (optional, default 1; 0 = the stem) divides the model into ``front`` (up to and including
    that stage) and ``back`` (the rest), ``model(x) == back(front(x))``: the scalable codec's base layer
    carries the features at the split (seed 002).
    """

    def __init__(self, model_params: dict[str, Any], num_classes: int):
        super().__init__()
        widths, blocks = model_params["widths"], model_params["blocks"]
        if len(widths) != len(blocks) or not widths:
            raise UserError(f"tasks.<task>.model widths {widths} and blocks {blocks} must be non-empty lists of one length")
        self.normalize = Normalize()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, model_params["stem_stride"], 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        in_channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks), start=1):
            stride = 1 if index == 1 else 2
            layers = [BasicBlock(in_channels if i == 0 else width, width, stride if i == 0 else 1) for i in range(count)]
            self.add_module(f"stage{index}", nn.Sequential(*layers))
            in_channels = width
        self.num_stages = len(widths)
        self.split_stage = model_params.get("split_stage", 1)
        if not 0 <= self.split_stage <= self.num_stages:
            raise UserError(f"tasks.<task>.model.split_stage is {self.split_stage} but the model has {self.num_stages} "
                            f"stages; set it between 0 (the stem) and {self.num_stages}")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """The features at the split point (output of the stem, or of stage ``split_stage``)."""
        x = self.stem(self.normalize(x))
        for index in range(1, self.split_stage + 1):
            x = getattr(self, f"stage{index}")(x)
        return x

    def back(self, features: torch.Tensor) -> torch.Tensor:
        """The class logits from the features at the split point."""
        for index in range(self.split_stage + 1, self.num_stages + 1):
            features = getattr(self, f"stage{index}")(features)
        return self.fc(self.pool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x))


def _torchvision_model(arch: str, num_classes: int) -> nn.Module:
    """torchvision's ``arch`` with ImageNet input normalisation as a forward pre-hook.

    The hook keeps torchvision's module names and state-dict keys, so torchvision weight
    files load unchanged; the normalisation buffers are not persistent.
    """
    import torchvision

    try:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError:
        known = ", ".join(sorted(TASK_MODELS))
        raise UserError(
            f"tasks.<task>.model.arch '{arch}' is neither a project task model ({known}) nor a torchvision "
            "classification model; fix the name"
        ) from None
    model.add_module("normalize", Normalize())
    model.register_forward_pre_hook(lambda module, args: (module.normalize(args[0]), *args[1:]))
    return model


def build_task_model(model_params: dict[str, Any], num_classes: int) -> nn.Module:
    """Instantiate ``model_params["arch"]`` for ``num_classes`` and load ``model_params["weights"]`` if set."""
    arch = model_params["arch"]
    model = TASK_MODELS[arch](model_params, num_classes) if arch in TASK_MODELS else _torchvision_model(arch, num_classes)
    if model_params["weights"] is not None:
        load_weights(model, model_params["weights"])
    return model


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local weight file: a plain state dict, or a taskcodec task checkpoint (its ``state_dict``).

    Every tensor must fit the model exactly; a mismatch (other architecture, widths or class count)
    is a :class:`UserError` naming the first offending key.
    """
    payload = artifacts.load_checkpoint(path, map_location="cpu")
    state = payload.get("state_dict", payload)
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise UserError(f"tasks.<task>.model.weights {path} has no '{key}'; it was saved for another architecture")
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            shape = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else type(state[key]).__name__
            raise UserError(
                f"tasks.<task>.model.weights {path} has '{key}' of shape {shape} but the model needs {tuple(value.shape)}; "
                "use weights of the same architecture, widths and number of classes"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise UserError(f"tasks.<task>.model.weights {path} has key '{unexpected[0]}' that the model lacks; "
                        "it was saved for another architecture")
    model.load_state_dict(state)

"""Object detectors of the detection task, by the names ``tasks.detection.model.arch`` uses.

Every detector takes float images in [0, 1] (N×3×H×W) and returns one dense tensor
N×(K+7)×h×w: at each of its h×w locations, K class logits, a centre-ness logit, a box
``x0, y0, x1, y1`` and the location ``x, y`` itself, both in input pixels (the channels of
:data:`CHANNELS`). The tensor describes itself, so the task decodes and scores it without
knowing the model (:mod:`taskcodec.tasks.detection`), and it batches like a classifier's logits.

- ``fcos-small``: a one-stage anchor-free detector after FCOS (Tian et al., "FCOS: Fully
  Convolutional One-Stage Object Detection", ICCV 2019) on one feature level: the residual trunk
  of ``resnet-small`` (He et al. 2016; :class:`~taskcodec.tasks.models.BasicBlock`, modules
  ``stem``, ``stage1`` … ``stageK``) and a shared head tower (convolutions with group norm) with a
  classification, a centre-ness and a box branch; distances to the four box sides are
  ``softplus(·)·stride``. It trains on the CPU in minutes on 64–96 px images.
- any other name is a torchvision detection model (``torchvision.models.get_model(name,
  weights=None, weights_backbone=None, num_classes=K+1)``, e.g. ``fasterrcnn_mobilenet_v3_large_fpn``)
  for GPU users, used frozen with local trained weights (``tasks.detection.model.weights``; nothing is
  downloaded). Its best :data:`SLOTS` detections fill a 1×SLOTS map, each as a location whose class
  and centre-ness logits are the logit of its score, so decoding gives back torchvision's boxes and scores.

The split point of ``fcos-small`` (``split_stage``: 0 = the stem, k = stage k) divides it into
``front(x)`` → features, the "first layers" a scalable codec's base layer carries, and
``back(features)`` → outputs; ``model(x) == back(front(x))``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from taskcodec.errors import UserError
from taskcodec.tasks.models import BasicBlock, Normalize

#: the channel groups of a detector's output after its K class logits: (first offset after K, width)
CHANNELS = {"centerness": (0, 1), "box": (1, 4), "location": (5, 2)}
EXTRA_CHANNELS = 7
#: locations of a torchvision detector's output map: its best detections (sorted by score), at least the candidates
#: decoding keeps (:data:`taskcodec.tasks.detection.CANDIDATES`); one width for every image, so outputs concatenate
SLOTS = 100
_PRIOR = 0.01  # initial foreground probability of the classification branch (Lin et al., focal loss, §4.1)


def _conv_gn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
                         nn.GroupNorm(min(8, out_channels), out_channels), nn.ReLU())


class FCOSSmall(nn.Module):
    """FCOS on the last stage of a small residual trunk; see the module docstring."""

    def __init__(self, model_params: dict[str, Any], num_classes: int):
        super().__init__()
        widths, blocks, split = model_params["widths"], model_params["blocks"], model_params["split_stage"]
        if len(widths) != len(blocks) or not widths:
            raise UserError(f"tasks.detection.model widths {widths} and blocks {blocks} must be non-empty lists of one length")
        if not 0 <= split <= len(widths):
            raise UserError(f"tasks.detection.model.split_stage is {split} but the trunk has {len(widths)} stages; "
                            f"use 0 (the stem) to {len(widths)}")
        self.normalize = Normalize()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, model_params["stem_stride"], 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        in_channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks), start=1):
            stride = 1 if index == 1 else 2
            self.add_module(f"stage{index}", nn.Sequential(*[
                BasicBlock(in_channels if i == 0 else width, width, stride if i == 0 else 1) for i in range(count)]))
            in_channels = width
        self.stages = [f"stage{index}" for index in range(1, len(widths) + 1)]
        self.split_stage = split
        self.stride = model_params["stem_stride"] * 2 ** (len(widths) - 1)
        head = model_params["head_width"]
        self.tower = nn.Sequential(_conv_gn(in_channels, head), _conv_gn(head, head))
        self.classify = nn.Conv2d(head, num_classes, 3, 1, 1)
        self.centerness = nn.Conv2d(head, 1, 3, 1, 1)
        self.box = nn.Conv2d(head, 4, 3, 1, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.bias is None:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.classify.bias, -math.log((1 - _PRIOR) / _PRIOR))

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """The features at the split point (output of the stem, or of stage ``split_stage``)."""
        x = self.stem(self.normalize(x))
        for name in self.stages[: self.split_stage]:
            x = getattr(self, name)(x)
        return x

    def back(self, features: torch.Tensor) -> torch.Tensor:
        """The detector's outputs (see the module docstring) from the features at the split point."""
        x = features
        for name in self.stages[self.split_stage:]:
            x = getattr(self, name)(x)
        x = self.tower(x)
        height, width = x.shape[-2:]
        ys = (torch.arange(height, device=x.device, dtype=x.dtype) + 0.5) * self.stride
        xs = (torch.arange(width, device=x.device, dtype=x.dtype) + 0.5) * self.stride
        location = torch.stack(torch.meshgrid(xs, ys, indexing="xy")).expand(len(x), -1, -1, -1)
        distances = F.softplus(self.box(x)) * self.stride  # to the left, top, right and bottom sides
        box = torch.cat([location - distances[:, :2], location + distances[:, 2:]], dim=1)
        return torch.cat([self.classify(x), self.centerness(x), box, location], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x))


class TorchvisionDetector(nn.Module):
    """A torchvision detection model by name, frozen, its detections as a 1×SLOTS output map (module docstring)."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        import torchvision

        try:
            self.model = torchvision.models.get_model(arch, weights=None, weights_backbone=None,
                                                      num_classes=num_classes + 1)
        except ValueError:
            raise UserError(f"tasks.detection.model.arch '{arch}' is neither fcos-small nor a torchvision detection model; "
                            "fix the name") from None
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise UserError("a torchvision detector is used frozen with trained local weights (tasks.detection.model.weights); "
                            "train it with torchvision's detection references, or use arch fcos-small here")
        detections = [{key: value[:SLOTS] for key, value in d.items()} for d in self.model(list(x))]
        out = torch.full((len(x), self.num_classes + EXTRA_CHANNELS, 1, SLOTS), -30.0, device=x.device)
        for i, d in enumerate(detections):
            found = torch.arange(len(d["scores"]), device=x.device)
            logit = torch.logit(d["scores"].clamp(1e-6, 1 - 1e-6))
            out[i, d["labels"] - 1, 0, found] = logit
            out[i, self.num_classes, 0, found] = logit
            out[i, self.num_classes + 1: self.num_classes + 5, 0, : len(found)] = d["boxes"].T
            out[i, self.num_classes + 5:, 0, : len(found)] = (d["boxes"][:, :2] + d["boxes"][:, 2:]).T / 2
        return out


def build_detector(model_params: dict[str, Any], num_classes: int) -> nn.Module:
    """``model_params["arch"]`` for ``num_classes`` with ``model_params["weights"]`` loaded if set."""
    from taskcodec.tasks.models import load_weights

    arch, weights = model_params["arch"], model_params["weights"]
    if arch == "fcos-small":
        model = FCOSSmall(model_params, num_classes)
        if weights is not None:
            load_weights(model, weights)
        return model
    if weights is None:
        raise UserError(f"tasks.detection.model.arch '{arch}' needs trained local weights; set tasks.detection.model.weights to "
                        "a state-dict file of it (nothing is downloaded)")
    model = TorchvisionDetector(arch, num_classes)
    load_weights(model.model, weights)
    return model.eval()

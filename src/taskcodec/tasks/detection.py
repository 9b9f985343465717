"""The detection task: object boxes and classes, scored by mean average precision.

A sample's target is its manifest ``objects`` (:data:`taskcodec.data.manifest.OBJECTS_COLUMN`:
boxes in pixels of the prepared image and class indices); a batch's targets are a list of
``{"boxes": K×4 float, "labels": K int64}`` dicts, the form torchvision's detection models and
torchmetrics take. The model is a detector of :mod:`taskcodec.tasks.detector`, whose dense
outputs the task decodes, trains and scores:

- loss (FCOS, Tian et al. ICCV 2019): a location is positive for the smallest box that holds it
  within 1.5 strides of the box's centre (FCOS's centre sampling); sigmoid focal loss (Lin et al.,
  "Focal Loss for Dense Object Detection", ICCV 2017) over all locations and classes, normalised by
  the positives; generalized IoU loss (Rezatofighi et al., CVPR 2019) of the positives' boxes
  weighted by their centre-ness targets; binary cross-entropy of the centre-ness — torchvision.ops'
  ``sigmoid_focal_loss`` and ``generalized_box_iou_loss``.
- decoding: score √(p_class · p_centerness) (FCOS), at least :data:`SCORE_THRESHOLD`, the
  :data:`CANDIDATES` best per image, class-wise non-maximum suppression at IoU :data:`NMS_IOU`
  (``torchvision.ops.batched_nms``), at most :data:`MAX_DETECTIONS` kept.
- metrics: ``map_50`` (mAP at IoU 0.5, the primary metric) and ``map`` (mAP averaged over IoU
  0.5:0.05:0.95), COCO's definitions as torchmetrics' ``MeanAveragePrecision`` computes them
  (:data:`MAP_BACKEND`: faster-coco-eval, pycocotools' evaluation in C++ with the same values, for the
  thousands of per-image APs of an evaluation job): over a whole set by :meth:`DetectionTask.summarize`, per
  image (the AP of that image alone; NaN for an image without objects or detections) by
  :meth:`DetectionTask.scores` for per_image.csv.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss

from taskcodec.data.manifest import OBJECTS_COLUMN, parse_objects
from taskcodec.errors import UserError
from taskcodec.tasks.detector import CHANNELS, build_detector
from taskcodec.tasks.registry import TRUNK_PROPERTIES, Task, register_task

SCORE_THRESHOLD = 0.05
CANDIDATES = 100
NMS_IOU = 0.6
MAX_DETECTIONS = 50
CENTER_RADIUS = 1.5  # strides around a box's centre where locations may be positive
#: torchmetrics' COCO backend for mAP (tests/tasks/test_detection.py checks it against pycocotools)
MAP_BACKEND = "faster_coco_eval"


def _channels(outputs: torch.Tensor, name: str, num_classes: int) -> torch.Tensor:
    """One channel group of detector outputs as N×L×C (L = h·w locations)."""
    first, width = CHANNELS[name]
    group = outputs[:, num_classes + first: num_classes + first + width]
    return group.flatten(2).transpose(1, 2)


def _map(iou_thresholds: list[float] | None = None, backend: str | None = None):
    """torchmetrics' mAP in COCO's definitions, with ``backend`` (default :data:`MAP_BACKEND`)."""
    from torchmetrics.detection import MeanAveragePrecision

    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=iou_thresholds,
                                backend=backend or MAP_BACKEND)


@functools.cache
def _image_map(backend: str):
    """The metric of :meth:`DetectionTask.scores` with ``backend``, built once and reset for each image (an
    evaluation scores thousands of images one by one; building a metric takes three times as long as one image's
    AP)."""
    return _map(backend=backend)


def _finite(value: torch.Tensor) -> float:
    """A torchmetrics value, NaN for its -1 ("undefined": no objects and no detections)."""
    value = float(value)
    return math.nan if value < 0 else value


@register_task("detection")
class DetectionTask(Task):
    """Object detection: FCOS losses, mAP@0.5 and mAP@[.5:.95] (see the module docstring)."""

    sample_fields = (OBJECTS_COLUMN,)
    target_reads_image = False
    metric_names = ("map_50", "map")
    primary_metric = "map_50"
    #: fcos-small (:mod:`taskcodec.tasks.detector`) or a torchvision detection model's name with local weights
    model_schema = {
        "type": "object", "additionalProperties": False, "required": ["arch", "weights"],
        "properties": {
            **TRUNK_PROPERTIES,
            "head_width": {"type": "integer", "minimum": 1},
        },
        "if": {"properties": {"arch": {"const": "fcos-small"}}},
        "then": {"required": ["widths", "blocks", "stem_stride", "head_width", "split_stage"]},
    }

    def target(self, row, image):
        image_id = row.get("image_id", "")
        if OBJECTS_COLUMN not in row:
            raise UserError(f"image {image_id} has no boxes, but the detection task needs them; prepare a "
                            "detection dataset (prepare.builtin.objects, or prepare.annotations with an image folder)")
        objects = parse_objects(row[OBJECTS_COLUMN], f"manifest row {image_id}")
        if any(not 0 <= label < len(self.class_names) for label in objects["labels"]):
            raise UserError(f"image {image_id} has object labels {objects['labels']} outside the "
                            f"{len(self.class_names)} classes of the task model; retrain it (train_task) or point "
                            "--task-model to this dataset's checkpoint")
        return objects

    def collate(self, targets):
        return [{"boxes": torch.tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4),
                 "labels": torch.tensor(t["labels"], dtype=torch.int64)} for t in targets]

    def augment(self, targets, draws, padding, size):
        height, width = size
        moved = []
        for target, flip, top, left in zip(targets, draws.flips.tolist(), draws.tops.tolist(), draws.lefts.tolist()):
            boxes = target["boxes"] + torch.tensor([padding - left, padding - top] * 2, dtype=torch.float32)
            if flip:
                boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
            boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([width, height] * 2, dtype=torch.float32))
            kept = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
            moved.append({"boxes": boxes[kept], "labels": target["labels"][kept]})
        return moved

    def build_model(self, model_params):
        return build_detector(model_params, len(self.class_names))

    def loss(self, outputs, targets):
        k = len(self.class_names)
        logits = _channels(outputs, "centerness", k)[..., 0]
        classes = outputs[:, :k].flatten(2).transpose(1, 2)
        boxes, locations = _channels(outputs, "box", k), _channels(outputs, "location", k).detach()
        stride = float(locations[0, 1, 0] - locations[0, 0, 0]) if locations.shape[1] > 1 else 1.0  # grid spacing
        wanted = torch.zeros_like(classes)
        positive_boxes, target_boxes, positive_locations, positive_logits = [], [], [], []
        for i, target in enumerate(targets):
            gt = target["boxes"].to(outputs.device)
            assigned = self._assign(locations[i], gt, stride)
            positive = assigned >= 0
            wanted[i, positive, target["labels"].to(outputs.device)[assigned[positive]]] = 1.0
            positive_boxes.append(boxes[i, positive])
            target_boxes.append(gt[assigned[positive]])
            positive_locations.append(locations[i, positive])
            positive_logits.append(logits[i, positive])
        count = sum(len(b) for b in positive_boxes)
        loss = sigmoid_focal_loss(classes, wanted, reduction="sum") / max(count, 1)
        if count:
            truth, centre = torch.cat(target_boxes), torch.cat(positive_locations)
            sides = torch.cat([centre - truth[:, :2], truth[:, 2:] - centre], dim=1).clamp(min=1e-6)
            horizontal, vertical = sides[:, [0, 2]], sides[:, [1, 3]]
            centerness = torch.sqrt(horizontal.min(dim=1).values / horizontal.max(dim=1).values
                                    * vertical.min(dim=1).values / vertical.max(dim=1).values)
            giou = generalized_box_iou_loss(torch.cat(positive_boxes), truth, reduction="none")
            loss = loss + (giou * centerness).sum() / centerness.sum().clamp(min=1e-6)
            loss = loss + F.binary_cross_entropy_with_logits(torch.cat(positive_logits), centerness)
        return loss

    @staticmethod
    def _assign(locations: torch.Tensor, boxes: torch.Tensor, stride: float) -> torch.Tensor:
        """For each location (L×2), the index of the smallest box holding it near its centre, or -1 (FCOS)."""
        if len(boxes) == 0:
            return torch.full((len(locations),), -1, dtype=torch.int64, device=locations.device)
        x, y = locations[:, :1], locations[:, 1:]
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        radius = CENTER_RADIUS * stride
        inside = ((x > torch.maximum(boxes[:, 0], cx - radius)) & (x < torch.minimum(boxes[:, 2], cx + radius))
                  & (y > torch.maximum(boxes[:, 1], cy - radius)) & (y < torch.minimum(boxes[:, 3], cy + radius)))
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand_as(inside)
        area = torch.where(inside, area, torch.full_like(area, math.inf))
        smallest, index = area.min(dim=1)
        return torch.where(torch.isfinite(smallest), index, torch.full_like(index, -1))

    def detections(self, outputs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Decoded detections per image: ``{"boxes", "scores", "labels"}`` (see the module docstring)."""
        k = len(self.class_names)
        probability = torch.sqrt(torch.sigmoid(outputs[:, :k].flatten(2).transpose(1, 2))
                                 * torch.sigmoid(_channels(outputs, "centerness", k)))
        boxes = _channels(outputs, "box", k)
        found = []
        for scores, image_boxes in zip(probability, boxes):
            flat = scores.flatten()
            top = flat.topk(min(CANDIDATES, len(flat)))
            keep = top.values >= SCORE_THRESHOLD
            values, index = top.values[keep], top.indices[keep]
            location, label = index // k, index % k
            chosen = batched_nms(image_boxes[location], values, label, NMS_IOU)[:MAX_DETECTIONS]
            found.append({"boxes": image_boxes[location[chosen]], "scores": values[chosen], "labels": label[chosen]})
        return found

    def scores(self, outputs, targets):
        values = {name: [] for name in self.metric_names}
        metric = _image_map(MAP_BACKEND)
        for found, target in zip(self.detections(outputs.detach().float()), targets):
            metric.reset()
            metric.update([found], [{key: value.to(found["boxes"].device) for key, value in target.items()}])
            result = metric.compute()
            for name in self.metric_names:
                values[name].append(_finite(result[name]))
        return {name: torch.tensor(v, dtype=torch.float64) for name, v in values.items()}

    def summarize(self, outputs, targets):
        metric = _map()
        found = self.detections(outputs.detach().float())
        metric.update(found, [{key: value.to(outputs.device) for key, value in t.items()} for t in targets])
        result = metric.compute()
        return {name: _finite(result[name]) for name in self.metric_names}

    def predictions(self, outputs):
        """Each image's detections as lists, for per_image.csv: boxes and scores with the 9 significant digits that
        give back their float32 values, so that the boxes' mAP computed again from the file is the summary's (rounder
        scores tie, and ties reorder a ranking)."""
        return [{"boxes": [[float(f"{v:.9g}") for v in box] for box in d["boxes"].tolist()],
                 "scores": [float(f"{v:.9g}") for v in d["scores"].tolist()], "labels": d["labels"].tolist()}
                for d in self.detections(outputs)]

    def describe(self, outputs, target, k=3):
        """The ``k`` most confident detections, class and score, one per line."""
        found = self.detections(outputs[None])[0]
        return "\n".join(f"{self.class_names[label]} {100 * score:.0f}%" for score, label in
                         zip(found["scores"][:k].tolist(), found["labels"][:k].tolist())) or "nothing found"

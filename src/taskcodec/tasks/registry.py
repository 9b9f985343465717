"""The plug-in contract of a machine task, and the registry of tasks by the names params.yaml uses.

A task tells the pipeline what a sample holds, how its frozen model is built,
trained and applied, its loss and its metrics; the stages and reports use
nothing else, so a new task is one module with one class decorated by
:func:`register_task` and named as a key of ``tasks`` (README "Extending taskcodec").

- ``sample_fields``: the manifest columns a sample holds beside the image
  (classification: ``label``; detection: ``objects``); :meth:`Task.target` turns
  one sample into the model's target and :meth:`Task.collate` a list of them into
  the targets of a batch or a split (classification: a tensor of labels;
  detection: a list of ``{"boxes", "labels"}`` dicts, as torchvision's detection
  models take them). A tensor is moved to the model's device by the stages;
  other targets are the task's to move. ``target_reads_image``: whether a
  target needs the image too (a split read from its files is then decoded once
  to make its targets; the built-in tasks read the manifest row alone).
- ``metric_names``: scores in [0, 1], higher is better (the rate–accuracy
  tables, plots and the DVC summary have one column each); ``primary_metric``
  is the one behind BD-rate at equal accuracy and the bits each curve needs to
  come within a margin of the uncompressed model. :meth:`Task.summarize` gives
  their values over a whole set — the mean of the per-sample scores unless a
  metric is defined over the set, as detection's mean average precision is.
- :meth:`Task.build_model`: the model, float images in [0, 1] → outputs; it
  is trained on the uncompressed training split and frozen afterwards.
  :meth:`Task.apply` runs it on a batch: ``model(images)``, unless the model
  reads more than the image (VQA: each image's questions, from the targets).
  ``model_schema`` (JSON schema) is what ``tasks.<task>.model`` may hold; it is checked
  with the messages of the params validation (:func:`check_model_params`).
- :meth:`Task.loss`: the differentiable training loss, a batch mean; the
  same loss is the task term ``L_task`` of joint fine-tuning (seed 000).
- :meth:`Task.scores` / :meth:`Task.predictions`: per-sample metric values and
  the prediction written to per_image.csv; :meth:`Task.describe` a caption of
  one sample's outputs for figures.
- :meth:`Task.breakdown`: one sample's scores of the primary metric by group
  (``group_name``; VQA: each question's accuracy by its question type), which
  the rate–accuracy report tabulates per group for every codec point; none by
  default.
- :meth:`Task.augment`: a training batch's targets moved with its images, which
  the trainings translate and flip (:class:`taskcodec.augment.Draws`; needed by
  targets in image coordinates, such as detection's boxes).
"""

from __future__ import annotations

import difflib
import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from taskcodec.augment import Draws
from taskcodec.errors import UserError
from taskcodec.registration import registrar
from taskcodec.plugins import load_plugins

TASKS: dict[str, type["Task"]] = {}


#: class decorator adding a task to :data:`TASKS` under ``name`` (and setting its ``name``)
register_task = registrar(TASKS, "task", lambda name, cls: setattr(cls, "name", name))


def check_model_params(name: str, model_params: Any, source: str = "params.yaml") -> None:
    """Check ``tasks.<task>.model`` against the ``model_schema`` of task ``name`` (unknown key, type, range...)."""
    from taskcodec.params import check_value

    build_task(name, [])  # an unknown task name is reported first
    check_value(TASKS[name].model_schema, model_params, f"tasks.{name}.model", source)


def build_task(name: str, class_names: list[str]) -> "Task":
    """The task ``name`` for a dataset with ``class_names`` (an unknown name is a :class:`UserError`)."""
    load_plugins()
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(TASKS))}"
        raise UserError(f"unknown task '{name}' ({hint})")
    return TASKS[name](class_names)


#: ``tasks.<task>.model`` keys of a model by name with optional local weights, whose project models have a residual trunk
#: (:class:`taskcodec.tasks.models.ResNetSmall`: widths, blocks, stem stride, and the split point of ``front``/``back``)
TRUNK_PROPERTIES = {
    "arch": {"type": "string", "minLength": 1},
    "widths": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
    "blocks": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
    "stem_stride": {"enum": [1, 2]},
    "split_stage": {"type": "integer", "minimum": 0},
    "weights": {"type": ["string", "null"], "minLength": 1},
}


class Task:
    """A machine task; see the module docstring. ``class_names`` are the dataset's labels by index."""

    name: ClassVar[str] = ""
    sample_fields: ClassVar[tuple[str, ...]] = ()
    target_reads_image: ClassVar[bool] = True
    metric_names: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[str] = ""
    #: what :meth:`breakdown` groups the primary metric by ("" : the task has no groups)
    group_name: ClassVar[str] = ""
    model_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: the model splits into ``front`` (image → features) and ``back`` (features → outputs), which the scalable
    #: codec's base layer needs (seed 002)
    splits: ClassVar[bool] = True

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)

    def target(self, row: dict[str, Any], image: np.ndarray | None) -> Any:
        """The model's target for one sample: its manifest ``row`` and its original 8-bit image H×W×3 (None for a
        task that does not read it, ``target_reads_image`` False, when its split is read from the files)."""
        raise NotImplementedError

    def collate(self, targets: list[Any]) -> Any:
        """The targets of a batch or a split from the samples' :meth:`target` s (by default a tensor of them)."""
        return torch.tensor(targets)

    def augment(self, targets: Any, draws: Draws, padding: int, size: tuple[int, int]) -> Any:
        """The ``targets`` of a batch of H×W (``size``) images cut as ``draws`` say from their sources
        replicate-padded by ``padding`` (:class:`~taskcodec.augment.Draws`: translated by padding − top,
        padding − left, and mirrored where flipped); by default unchanged."""
        return targets

    def build_model(self, model_params: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def apply(self, model: nn.Module, inputs: tuple[torch.Tensor, ...], targets: Any) -> torch.Tensor:
        """The outputs of ``model`` for a batch: its ``inputs`` (the images, or latents) and the batch's collated
        ``targets``, which a model reading more than the image takes its other inputs from (by default unused)."""
        return model(*inputs)

    def loss(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, outputs: torch.Tensor, targets: Any) -> dict[str, torch.Tensor]:
        """Per-sample values (shape N) of every name in ``metric_names``; NaN where undefined."""
        raise NotImplementedError

    def summarize(self, outputs: torch.Tensor, targets: Any) -> dict[str, float]:
        """The value of every name in ``metric_names`` over a whole set (by default the mean of :meth:`scores`)."""
        return {name: values.double().mean().item() for name, values in self.scores(outputs, targets).items()}

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def breakdown(self, target: Any, prediction: Any) -> list[tuple[str, float]]:
        """(group, score) of each item of one sample (its :meth:`target` and its entry of :meth:`predictions`)
        whose primary metric is broken down by ``group_name``; none by default."""
        return []

    def describe(self, outputs: torch.Tensor, target: Any, k: int = 3) -> str:
        """A caption of the model's answer for one sample (its ``outputs`` and :meth:`target`), for figures."""
        raise NotImplementedError


@register_task("classification")
class ClassificationTask(Task):
    """Image classification: cross-entropy loss; top-1 and (with at least five classes) top-5 accuracy."""

    sample_fields = ("label",)
    target_reads_image = False
    metric_names = ("top1", "top5")
    primary_metric = "top1"
    #: resnet-small (:mod:`taskcodec.tasks.models`) or a torchvision classifier name, optional local weights
    model_schema = {
        "type": "object", "additionalProperties": False, "required": ["arch", "weights"],
        "properties": {**TRUNK_PROPERTIES},
        "if": {"properties": {"arch": {"const": "resnet-small"}}},
        "then": {"required": ["widths", "blocks", "stem_stride"]},
    }

    def target(self, row, image):
        label = int(row["label"])
        if label == -1:
            raise UserError(f"image {row.get('image_id', '')} has no class label, but the classification task "
                            "needs one; prepare a labeled dataset (class folders, or the builtin dataset without objects)")
        if not 0 <= label < len(self.class_names):
            raise UserError(f"image label {label} is outside the {len(self.class_names)} classes the task model was "
                            f"trained for ({', '.join(self.class_names)}); the task model belongs to another dataset: "
                            "retrain it (train_task) or point --task-model to this dataset's checkpoint")
        return label

    def build_model(self, model_params):
        from taskcodec.tasks.models import build_task_model

        return build_task_model(model_params, len(self.class_names))

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def scores(self, outputs, targets):
        targets = targets.to(outputs.device).view(-1, 1)
        ranked = outputs.topk(min(5, outputs.shape[1]), dim=1).indices
        top5 = (ranked == targets).any(dim=1).double() if outputs.shape[1] >= 5 \
            else torch.full((len(outputs),), math.nan, dtype=torch.float64)
        return {"top1": (ranked[:, :1] == targets).any(dim=1).double(), "top5": top5}

    def predictions(self, outputs):
        return outputs.argmax(dim=1)

    def describe(self, outputs, target, k=3):
        """The ``k`` most probable classes with their softmax confidences, one per line."""
        return most_probable(outputs, self.class_names, k)


def most_probable(logits: torch.Tensor, names: list[str], k: int) -> str:
    """The ``k`` most probable of ``names`` under the softmax of ``logits``, with their confidences, one per line."""
    probabilities = torch.softmax(logits.double(), dim=0)
    top = probabilities.topk(min(k, len(probabilities)))
    return "\n".join(f"{names[i]} {100 * p:.0f}%" for p, i in zip(top.values.tolist(), top.indices.tolist()))


# The project's other tasks register themselves on import (after Task and register_task exist).
from taskcodec.tasks import detection, vqa  # noqa: E402,F401

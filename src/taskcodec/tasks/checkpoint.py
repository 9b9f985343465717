"""Checkpoints of task models and latent classifiers: weights plus the params, classes and metrics behind them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from taskcodec import __version__, artifacts
from taskcodec.errors import UserError
from taskcodec.tasks.labels import class_names
from taskcodec.tasks.latent_models import build_latent_classifier
from taskcodec.tasks.registry import build_task

KIND = "taskcodec-task-model"
LATENT_KIND = "taskcodec-latent-classifier"


def save_task_model(path: str | Path, model: nn.Module, task: str, model_params: dict[str, Any], num_classes: int,
                    class_names: list[str], train_params: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write ``model`` of the registered ``task`` with everything needed to rebuild and audit it (atomically)."""
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    artifacts.save_checkpoint(path, {
        "kind": KIND, "taskcodec_version": __version__, "task": task, "model_params": model_params,
        "num_classes": num_classes,
        "class_names": list(class_names), "train_params": train_params, "metrics": metrics, "state_dict": state,
    })


def load_task_model(path: str | Path, device: torch.device | str = "cpu",
                    manifest: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the task model at ``path``: (model in eval mode on ``device``, info); with a ``manifest``, one
    trained for as many classes as its task has on that dataset (:func:`~taskcodec.tasks.labels.class_names`).

    The model maps float images in [0, 1] (N×3×H×W) to the task's outputs (logits N×K for
    classification). ``info`` holds ``task`` (the :class:`~taskcodec.tasks.registry.Task`),
    ``model_params``, ``num_classes``, ``class_names``, ``train_params`` and ``metrics``.
    """
    payload = artifacts.load_checkpoint(path, map_location="cpu")
    expected = None if manifest is None or payload.get("kind") != KIND else len(class_names(manifest, payload["task"]))
    payload = _payload(path, KIND, "train_task", expected, payload)
    task = build_task(payload["task"], payload["class_names"])
    model, info = _restore(path, task.build_model({**payload["model_params"], "weights": None}), payload, device)
    return model, {**info, "task": task}


def save_latent_classifier(path: str | Path, model: nn.Module, model_params: dict[str, Any], latent_channels: int,
                           num_classes: int, class_names: list[str], train_params: dict[str, Any],
                           metrics: dict[str, Any]) -> None:
    """Write a latent classifier (input: ŷ and σ̂ with ``latent_channels`` channels) atomically."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    artifacts.save_checkpoint(path, {
        "kind": LATENT_KIND, "taskcodec_version": __version__, "model_params": model_params,
        "latent_channels": latent_channels, "num_classes": num_classes, "class_names": list(class_names),
        "train_params": train_params, "metrics": metrics, "state_dict": state,
    })


def load_latent_classifier(path: str | Path, device: torch.device | str = "cpu",
                           expect_num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the latent classifier at ``path``: (model in eval mode, info with ``latent_channels`` too)."""
    payload = _payload(path, LATENT_KIND, "train_latent_classifier", expect_num_classes)
    model = build_latent_classifier(payload["model_params"], payload["latent_channels"], payload["num_classes"])
    model, info = _restore(path, model, payload, device)
    return model, {**info, "latent_channels": payload["latent_channels"]}


def _payload(path: str | Path, kind: str, stage: str, expect_num_classes: int | None,
             payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint at ``path`` (or its ``payload`` already read), checked to be of ``kind``."""
    payload = artifacts.load_checkpoint(path, map_location="cpu") if payload is None else payload
    if payload.get("kind") != kind:
        raise UserError(f"{path} is not a {kind} checkpoint (kind {payload.get('kind')!r}); "
                        f"point to a model.pt written by {stage}")
    if expect_num_classes is not None and payload["num_classes"] != expect_num_classes:
        raise UserError(
            f"{path} was trained for {payload['num_classes']} classes but the dataset has {expect_num_classes}; "
            f"retrain the task model ({stage}) on this dataset"
        )
    return payload


def _restore(path, model: nn.Module, payload: dict[str, Any], device) -> tuple[nn.Module, dict[str, Any]]:
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise UserError(f"checkpoint {path} does not fit its own model params ({err}); delete it and retrain") from None
    info = {key: payload[key] for key in ("model_params", "num_classes", "class_names", "train_params", "metrics")}
    return model.to(device).eval(), info


def freeze(model: nn.Module) -> nn.Module:
    """Switch ``model`` to eval mode and stop gradients to its parameters (it still passes them to its input)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model

"""Codec checkpoints: a trained model plus the resolved params that produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel

from taskcodec import __version__, artifacts
from taskcodec.codecs.registry import build_codec, hyper_label, needs_task_model, zoo_codec
from taskcodec.errors import UserError
from taskcodec.tasks.registry import build_task

KIND = "taskcodec-codec"


def save_codec(path: Path, model: CompressionModel, arch: str, hyper: dict[str, int], lmbda: float | list[float],
               params: dict[str, Any], metrics: dict[str, Any], task_model: dict[str, Any] | None = None,
               ssl_model: dict[str, Any] | None = None) -> None:
    """Write ``model`` (after ``update()``) with everything needed to rebuild and audit it.

    ``hyper`` are the constructor's hyperparameters (:func:`~taskcodec.codecs.registry.build_codec`). A codec
    built on the frozen task model also records how to rebuild that model (``task_model``: its ``task``
    name, ``model_params`` and ``class_names``, as :func:`taskcodec.tasks.checkpoint.load_task_model` gives
    them); one built on the self-supervised network records that network's ``params`` (``ssl_model``, the
    ``simclr`` section it was trained with). Their weights are in the codec's own state dict.
    """
    if needs_task_model(arch) and task_model is None:
        raise ValueError(f"{arch} is built on a task model: pass task_model to save_codec")
    artifacts.save_checkpoint(path, {
        "kind": KIND, "taskcodec_version": __version__, "arch": arch, "hyper": dict(hyper), "lmbda": lmbda,
        "params": params, "metrics": metrics, "state_dict": model.state_dict(),
        **({"task_model": task_model} if task_model is not None else {}),
        **({"ssl_model": ssl_model} if ssl_model is not None else {}),
    })


def _task_model(payload: dict[str, Any]) -> torch.nn.Module | None:
    """The (untrained) task model a codec checkpoint is built on, or None; its weights come with the codec's."""
    if not needs_task_model(payload["arch"]):
        return None
    info = payload["task_model"]
    return build_task(info["task"], info["class_names"]).build_model({**info["model_params"], "weights": None})


def _ssl_model(payload: dict[str, Any]) -> torch.nn.Module | None:
    """The (untrained) self-supervised feature extractor a codec checkpoint is built on, or None."""
    if payload.get("ssl_model") is None:
        return None
    from taskcodec.selfsupervised.models import FeatureExtractor, SimCLR

    return FeatureExtractor(SimCLR({**payload["ssl_model"]["params"], "weights": None}))


def load_codec(path: str | Path, device: torch.device | str = "cpu", expect_arch: str | None = None,
               point: int | None = None) -> tuple[CompressionModel, dict[str, Any]]:
    """Rebuild the model stored at ``path``; returns (model in eval mode, checkpoint metadata).

    The metadata holds ``arch``, ``hyper``, ``lmbda`` (a variable-rate codec's: one λ per operating point),
    ``params``, ``metrics`` and ``codec_id`` (``<arch>/<hyper label>``, the codec's name in tables and
    tracking). ``point`` selects a variable-rate codec's operating point (``select_point``).
    """
    payload = artifacts.load_checkpoint(path, map_location="cpu")
    if payload.get("kind") != KIND:
        raise UserError(f"{path} is not a taskcodec codec checkpoint (kind {payload.get('kind')!r})")
    if expect_arch is not None and payload["arch"] != expect_arch:
        raise UserError(
            f"checkpoint {path} holds a {payload['arch']} model, but {expect_arch} was asked for; "
            "point to a checkpoint of that architecture"
        )
    model = build_codec(payload["arch"], payload["hyper"], _task_model(payload), _ssl_model(payload))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        label = f"{payload['arch']} {hyper_label(payload['hyper'])}"
        expected, stored = set(model.state_dict()), set(payload["state_dict"])
        if expected == stored:  # the same keys, other shapes
            raise UserError(f"checkpoint {path} does not fit {label}: {str(err).splitlines()[0]}") from None
        differences = [f"{kind} {', '.join(sorted(keys)[:3])}{' …' if len(keys) > 3 else ''}"
                       for kind, keys in (("lacks", expected - stored), ("has unknown", stored - expected)) if keys]
        raise UserError(f"checkpoint {path} does not fit {label} of this version of taskcodec: it "
                        f"{' and '.join(differences)}; retrain it (an older version's checkpoint)") from None
    meta = {key: value for key, value in payload.items() if key != "state_dict"}
    meta["codec_id"] = f"{payload['arch']}/{hyper_label(payload['hyper'])}"
    if point is not None:
        if not 0 <= point < model.operating_points:
            raise UserError(f"{path} has {model.operating_points} operating point(s); point {point} does not "
                            f"exist: choose 0 to {model.operating_points - 1}")
        model.select_point(point)
    return model.to(device).eval(), meta


def initial_weights(model: CompressionModel, init: str | None, arch: str) -> None:
    """Load ``init`` weights into ``model``: a taskcodec checkpoint path or ``zoo:<arch>:<quality>``."""
    if init is None:
        return
    if init.startswith("zoo:"):
        _, zoo_arch, quality = init.split(":")
        if zoo_arch != arch:
            raise UserError(f"codec.train.init '{init}' is a {zoo_arch} model, but this job trains {arch}")
        source = zoo_codec(zoo_arch, int(quality))
        state = source.state_dict()
    else:
        source, _ = load_codec(init, expect_arch=arch)
        state = source.state_dict()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"codec.train.init '{init}' does not fit this job's hyperparameters: "
                        f"{str(err).splitlines()[0]}") from None

"""``model.pt`` of the train_simclr stage: the SimCLR network's weights with the params and metrics behind them.

Tensors and plain types only, so it loads with ``torch.load(weights_only=True)``
(:func:`taskcodec.artifacts.load_checkpoint`); the network is rebuilt from the params it embeds, never from a
weight file named in them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from taskcodec import __version__, artifacts
from taskcodec.errors import UserError, shown_path
from taskcodec.selfsupervised.models import FeatureExtractor, SimCLR

KIND = "taskcodec-simclr"


def save_simclr(path: str | Path, model: SimCLR, params: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write ``model`` (trunk and projection head) with its ``simclr`` params and metrics, atomically."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    artifacts.save_checkpoint(path, {"kind": KIND, "taskcodec_version": __version__, "params": params,
                                     "metrics": metrics, "state_dict": state})


def load_simclr(path: str | Path, device: torch.device | str = "cpu") -> tuple[SimCLR, dict[str, Any]]:
    """Rebuild the SimCLR network at ``path``: (network in eval mode on ``device``, info with ``params`` and
    ``metrics``)."""
    payload = artifacts.load_checkpoint(path, map_location="cpu")
    if payload.get("kind") != KIND:
        raise UserError(f"{shown_path(path)} is not a {KIND} checkpoint (kind {payload.get('kind')!r}); point to a "
                        "model.pt written by train_simclr")
    model = SimCLR({**payload["params"], "weights": None})
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise UserError(f"checkpoint {shown_path(path)} does not fit its own params ({err}); delete it and rerun "
                        "train_simclr") from None
    return model.to(device).eval(), {"params": payload["params"], "metrics": payload["metrics"]}


def load_feature_extractor(path: str | Path, device: torch.device | str = "cpu") -> FeatureExtractor:
    """The frozen group-1 features of the SimCLR network at ``path`` (train_simclr's model.pt), on ``device``.

    The module maps float images B×3×H×W in [0, 1] to B×``channels``×⌈H/4⌉×⌈W/4⌉ (``stride`` 4), stays in eval
    mode, has no trainable parameters and passes gradients to its input
    (:class:`~taskcodec.selfsupervised.models.FeatureExtractor`).
    """
    model, _ = load_simclr(path)
    return FeatureExtractor(model).to(device)

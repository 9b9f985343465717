"""An exponential moving average of a model's weights for validation and keeping (``codec.train.ema_decay``).

Built on ``torch.optim.swa_utils``; :func:`taskcodec.trainer.train` updates it after every step.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """An exponential moving average of a model's parameters (``torch.optim.swa_utils``), updated after
    every step; :meth:`swapped` puts the averaged parameters into the model for a while."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    def update(self) -> None:
        self.average.update_parameters(self.model)

    def swap(self) -> None:
        """Exchange the model's and the average's parameters (twice restores both)."""
        with torch.no_grad():
            for current, averaged in zip(self.model.parameters(), self.average.module.parameters()):
                current.data, averaged.data = averaged.data, current.data

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        self.swap()
        try:
            yield
        finally:
            self.swap()

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state)

"""Rolling a training back when its loss diverges.

Learned codecs trained with Adam sometimes diverge: the loss drifts up over some tens of steps, then explodes by
orders of magnitude, and the weights need thousands of steps to recover (in the Kodak study, bench/README.md, a
codec's training loss went from about 3 to 1e10 within 70 steps, and its validation loss took some 4000 steps to come
back). PaLM (Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways", 2022, section 5.1) handled such
spikes by restarting from a checkpoint about 100 steps before the spike and skipping the batches around it;
:class:`SpikeGuard` does the same in memory: a step whose loss exceeds ``factor`` times the median of the
previous ``window`` steps' losses (or is not finite) restores the model and optimizers of a snapshot taken one
to two windows earlier, and training goes on with the next batches. The step count and the time budget go on
too: the steps rolled back were spent. A training that never spikes computes exactly what it would without it.
The guard's losses and snapshots are part of the resume checkpoint, so a resumed run rolls back as the
uninterrupted one would.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections import deque
from typing import Any

#: steps between snapshots, and the losses the median is taken over
WINDOW = 100


class SpikeGuard:
    """Watches the training loss after each step; :meth:`check` rolls ``stateful`` (name → object with
    ``state_dict``/``load_state_dict``: the model, its optimizers, its weight average) back on a spike.

    A snapshot becomes the one rolled back to only after a whole window without a spike, so that a slow drift
    before the explosion is not kept; a rollback discards the snapshot taken since. Before any snapshot has
    outlived a window, a spike rolls back to the first one. A loss that is not a number is never kept.
    """

    def __init__(self, factor: float, stateful: dict[str, Any], window: int = WINDOW):
        self.factor, self.stateful, self.window = factor, stateful, window
        self.losses: deque[float] = deque(maxlen=window)
        self.safe: tuple[int, dict[str, Any]] | None = None
        self.candidate: tuple[int, dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "safe": self.safe, "candidate": self.candidate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque(state["losses"], maxlen=self.window)
        self.safe, self.candidate = state["safe"], state["candidate"]

    def median(self) -> float | None:
        """The median of the previous ``window`` losses (not those of spikes); None before a whole window."""
        return statistics.median(self.losses) if len(self.losses) == self.window else None

    def check(self, step: int, loss: float) -> str | None:
        """After ``step`` steps with this step's ``loss``: roll back on a spike and say so, else None."""
        median = self.median()
        if median is not None and not (math.isfinite(loss) and loss <= self.factor * median):
            target = self.safe or self.candidate
            if target is None:
                return None
            restored, states = target
            for name, obj in self.stateful.items():
                obj.load_state_dict(copy.deepcopy(states[name]))  # the snapshot stays apart from the live state
            self.safe, self.candidate = target, None
            return (f"step {step}: loss {loss:.4g} > {self.factor:g} x the median of the previous {self.window} "
                    f"steps ({median:.4g}); rolled back to the weights of step {restored}")
        if not math.isfinite(loss):  # before a whole window: nothing to compare it with, and nothing to keep
            return None
        self.losses.append(loss)
        if step % self.window == 0:
            if self.candidate is not None:
                self.safe = self.candidate
            self.candidate = (step, {name: copy.deepcopy(obj.state_dict()) for name, obj in self.stateful.items()})
        return None

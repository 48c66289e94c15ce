"""Baselines for score-function estimators: small objects an estimator takes, as optax's pieces.

The protocol: ``b = baseline(fz)`` gives the draws f(z) of one call, shape ``[num_samples,
*batch]``, their baselines (a tensor broadcastable to it, or a float), from anything but each
draw itself, so that E[(f - b) grad log p] stays the gradient; ``min_samples`` is the fewest draws
it works with, ``options()`` what it shows in result tables, and ``state_dict`` /
``load_state_dict`` what a checkpoint keeps of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from estimators.base import ConfigError

SUPPLIED = "hook"
"""The option value that asks the caller (a task) for the baseline: ``baseline=hook``."""


class Baseline:
    """Base class: subclasses implement ``__call__`` and ``options``; no state by default."""

    min_samples: int = 1

    def __call__(self, fz: torch.Tensor) -> torch.Tensor | float:
        raise NotImplementedError

    def options(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (a stateless baseline ignores it)."""


class LeaveOneOut(Baseline):
    """b_i = the mean of f over the other draws of the same call (Kool et al. 2019): unbiased,
    and needs at least two draws."""

    min_samples = 2

    def __call__(self, fz: torch.Tensor) -> torch.Tensor:
        signal = fz.detach()
        return (signal.sum(0, keepdim=True) - signal) / (len(signal) - 1)

    def options(self) -> dict:
        return {"baseline": "loo"}


class MovingAverage(Baseline):
    """b = an exponential moving average (``decay`` in [0, 1)) of the mean of f over earlier
    calls: unbiased given the past; its average is its state."""

    def __init__(self, decay: float = 0.9) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"decay={decay!r}: the moving-average decay must be in [0, 1)")
        self.decay = float(decay)
        self.ema: torch.Tensor | None = None

    def __call__(self, fz: torch.Tensor) -> torch.Tensor | float:
        b = 0.0 if self.ema is None else self.ema
        mean = fz.detach().mean()
        self.ema = mean if self.ema is None else self.decay * self.ema + (1 - self.decay) * mean
        return b

    def options(self) -> dict:
        return {"baseline": "ema", "decay": self.decay}

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, state: dict) -> None:
        self.ema = state["ema"]


class Supplied(Baseline):
    """The caller's value per example, such as NVIL's learned b(x): ``with baseline.given(b):``
    around each call; unbiased as long as b does not depend on the draws."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    @contextmanager
    def given(self, value: torch.Tensor) -> Iterator[None]:
        """Use ``value`` (detached: a baseline carries no gradient) in the calls of the block."""
        self.value = value.detach()
        try:
            yield
        finally:
            self.value = None

    def __call__(self, fz: torch.Tensor) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("a Supplied baseline is called inside `with baseline.given(b):`")
        return self.value

    def options(self) -> dict:
        return {"baseline": SUPPLIED}


BASELINES = ("loo", "ema", SUPPLIED)


def from_name(name: str, decay: float = 0.9) -> Baseline | None:
    """The baseline a config names: ``loo``, ``ema`` (with ``decay``), or ``hook``, which gives
    None: the task passes its own ``Supplied`` baseline in (``make_estimator(baseline=...)``)."""
    if name not in BASELINES:
        raise ConfigError(f"baseline={name!r} is unknown; known baselines: {', '.join(BASELINES)}")
    average = MovingAverage(decay)  # checks decay whichever is named, as the yaml always gives one
    return {"loo": LeaveOneOut(), "ema": average, SUPPLIED: None}[name]

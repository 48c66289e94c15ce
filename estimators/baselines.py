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

from estimators.control_variates import event_dims, expand_event, scores
from estimators.errors import ConfigError

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


class OptimalConstant(Baseline):
    """The variance-minimizing constant per parameter coordinate of a Normal, b*_p = E[f s_p^2] /
    E[s_p^2] with s_p the score of parameter p (loc or scale), estimated for draw i from the
    other draws of the same call: b_i = sum_{j != i} f_j s_j^2 / sum_{j != i} s_j^2, a weighted
    mean of their f, so unbiased; needs at least two draws and costs no extra evaluation. Being
    per parameter, it is ``per_parameter``: the estimator asks ``values(dist, z, fz)`` for one
    baseline per parameter instead of calling it."""

    min_samples = 2
    per_parameter = True

    def __call__(self, fz: torch.Tensor) -> torch.Tensor:
        raise TypeError("OptimalConstant gives one baseline per parameter: call values()")

    def values(self, dist, z: torch.Tensor, fz: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per parameter, the baselines of each draw and coordinate, of the shape of ``z``."""
        signal = expand_event(fz.detach(), event_dims(dist))
        out = {}
        for p, s in scores(dist, z).items():
            w = s * s
            num = signal * w
            out[p] = others_sum(num) / others_sum(w.expand_as(num))
        return out

    def options(self) -> dict:
        return {"baseline": "optimal"}


def others_sum(x: torch.Tensor) -> torch.Tensor:
    """sum_{j != i} x_j along the first axis, from the sums before and after i: no cancellation
    (the total minus x_i would lose the digits of a small sum beside a large x_i)."""
    zero = torch.zeros_like(x[:1])
    before = torch.cat([zero, x[:-1].cumsum(0)])
    after = torch.cat([x[1:].flip(0).cumsum(0).flip(0), zero])
    return before + after


BASELINES = ("loo", "ema", SUPPLIED, "optimal")


def from_name(name: str, decay: float = 0.9) -> Baseline | None:
    """The baseline a config names: ``loo``, ``ema`` (with ``decay``), ``optimal`` (Normal
    distributions only), or ``hook``, which gives
    None: the task passes its own ``Supplied`` baseline in (``make_estimator(baseline=...)``)."""
    if name not in BASELINES:
        raise ConfigError(f"baseline={name!r} is unknown; known baselines: {', '.join(BASELINES)}")
    average = MovingAverage(decay)  # checks decay whichever is named, as the yaml always gives one
    known = {"loo": LeaveOneOut(), "ema": average, "optimal": OptimalConstant(), SUPPLIED: None}
    return known[name]

"""REINFORCE with a baseline b subtracted from f: E[(f(z) - b) grad log p(z)].

Baselines:
- ``loo``: leave-one-out over the num_samples draws, b_i = mean of f over the other draws
  (Kool et al. 2019); unbiased, needs num_samples >= 2.
- ``ema``: an exponential moving average of f across calls, with ``decay``; the value used in a
  call comes from earlier calls only, so the estimate stays unbiased given the past.
- ``hook``: the caller supplies the value per sample by setting ``est.hook = fn`` (or passing
  ``hook=fn``), where ``fn(z)`` returns a tensor broadcastable to ``[num_samples, *batch_shape]``;
  a VAE uses it for a learned, input-dependent baseline (NVIL).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from estimators.base import ConfigError, CostFn, Estimator, register, score_surrogate

BASELINES = ("loo", "ema", "hook")
LABELS = {
    "loo": "REINFORCE + leave-one-out baseline",
    "ema": "REINFORCE + moving-average baseline",
    "hook": "REINFORCE + learned baseline (NVIL)",
}


@register
class ReinforceBaseline(Estimator):
    """Score-function estimator with a leave-one-out, moving-average or caller-supplied baseline."""

    name = "reinforce_baseline"
    title = "REINFORCE + baseline"
    variants = tuple({"baseline": b} for b in BASELINES)

    def __init__(
        self,
        baseline: str = "loo",
        decay: float = 0.9,
        hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if baseline not in BASELINES:
            raise ConfigError(
                f"baseline={baseline!r} is unknown; known baselines: {', '.join(BASELINES)}"
            )
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"decay={decay!r}: the moving-average decay must be in [0, 1)")
        self.baseline = baseline
        self.decay = float(decay)
        self.hook = hook
        self.ema: torch.Tensor | None = None

    @property
    def min_samples(self) -> int:
        return 2 if self.baseline == "loo" else 1

    def options(self) -> dict:
        opts: dict = {"baseline": self.baseline}
        if self.baseline == "ema":
            opts["decay"] = self.decay
        return opts

    @classmethod
    def label(cls, options: dict) -> str:
        return LABELS.get(options.get("baseline"), cls.title)

    def check(self, dist: Distribution, num_samples: int) -> None:
        super().check(dist, num_samples)
        if self.baseline == "hook" and self.hook is None:
            raise ConfigError(
                "baseline='hook' needs a callable (est.hook = fn, fn(z) -> baseline per sample); "
                "task=vae supplies a learned one, so estimator=nvil works with task=vae only"
            )

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z = dist.sample((num_samples,))
        fz = f(z)
        if self.baseline == "loo":
            signal = fz.detach()
            b = (signal.sum(0, keepdim=True) - signal) / (num_samples - 1)
        elif self.baseline == "ema":
            b = 0.0 if self.ema is None else self.ema
            mean = fz.detach().mean()
            self.ema = mean if self.ema is None else self.decay * self.ema + (1 - self.decay) * mean
        else:
            b = self.hook(z)
        return score_surrogate(fz, dist.log_prob(z), b)

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, state: dict) -> None:
        self.ema = state["ema"]

"""REINFORCE with a baseline b subtracted from f: E[(f(z) - b) grad log p(z)].

The baseline is an object from ``estimators.baselines``, or its name: ``loo`` (leave-one-out over
the num_samples draws, needs num_samples >= 2), ``ema`` (a moving average of f over earlier calls,
with ``decay``), ``optimal`` (the optimal constant per Normal parameter, estimated leave-one-out;
needs num_samples >= 2) or ``hook``: the task passes a ``Supplied`` baseline in as ``baseline=``
and gives its value for each call (a VAE's learned, input-dependent baseline: NVIL).
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import (
    CostFn,
    Estimator,
    MultiSample,
    describe_distribution,
    register,
    score_surrogate,
)
from estimators.baselines import SUPPLIED, Baseline, from_name
from estimators.control_variates import event_dims, expand_event, is_normal, score_terms
from estimators.errors import ConfigError
from estimators.objectives import LogJoint, Objective
from estimators.reinforce import objective_score_surrogate

LABELS = {
    "loo": "REINFORCE + leave-one-out baseline",
    "ema": "REINFORCE + moving-average baseline",
    "optimal": "REINFORCE + optimal constant baseline",
    SUPPLIED: "REINFORCE + learned baseline (NVIL)",
}


@register
class ReinforceBaseline(MultiSample, Estimator):
    """Score-function estimator with a leave-one-out, moving-average or supplied baseline."""

    name = "reinforce_baseline"
    title = "REINFORCE + baseline"
    # The figures' fixed colours: a later baseline (optimal) comes after every known label, so
    # that adding it moves no other estimator's colour.
    variants = tuple({"baseline": b} for b in ("loo", "ema", SUPPLIED))
    objectives = ("elbo", "iwae")

    def __init__(self, baseline: str | Baseline = "loo", decay: float = 0.9) -> None:
        self.baseline = baseline if isinstance(baseline, Baseline) else from_name(baseline, decay)

    @property
    def min_samples(self) -> int:
        return 1 if self.baseline is None else self.baseline.min_samples

    def options(self) -> dict:
        return {"baseline": SUPPLIED} if self.baseline is None else self.baseline.options()

    @classmethod
    def label(cls, options: dict) -> str:
        return LABELS.get(options.get("baseline"), cls.title)

    @property
    def per_parameter(self) -> bool:
        """Whether the baseline gives one value per Normal parameter (``optimal``)."""
        return getattr(self.baseline, "per_parameter", False)

    def supports(self, dist: Distribution) -> bool:
        """Every distribution, but a Normal only for a per-parameter baseline."""
        return is_normal(dist) or not self.per_parameter

    def check(self, dist: Distribution, num_samples: int) -> None:
        if not self.supports(dist):
            raise ConfigError(
                f"baseline='optimal': the optimal constant baseline needs a Normal distribution, "
                f"not {describe_distribution(dist)}; baseline=loo or ema serves it"
            )
        super().check(dist, num_samples)
        if self.baseline is None:
            raise ConfigError(
                f"baseline={SUPPLIED!r} takes its baseline from the task (a Supplied one passed "
                "in as baseline=); task=vae supplies a learned one, so estimator=nvil works with "
                "task=vae only"
            )

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z = dist.sample((num_samples,))
        fz = f(z)
        if self.per_parameter:  # one baseline per parameter and coordinate
            signal = expand_event(fz.detach(), event_dims(dist))
            baselines = self.baseline.values(dist, z, fz)
            return fz + score_terms(dist, z, {p: signal - b for p, b in baselines.items()})
        return score_surrogate(fz, dist.log_prob(z), self.baseline(fz))

    def check_objective(self, dist: Distribution, objective: Objective, num_samples: int) -> None:
        """The base checks, and a baseline the objective path takes (loo or ema), before work."""
        if self.per_parameter or self.baseline is None:
            raise ConfigError(
                f"baseline={self.options()['baseline']}: multi-sample objectives take the "
                "baseline loo or ema"
            )
        super().check_objective(dist, objective, num_samples)

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        """REINFORCE for the objective with the baseline over its ``num_samples`` independent
        estimates (leave-one-out: the mean of the others, each from its own K draws)."""
        return objective_score_surrogate(dist, log_joint, objective, num_samples, self.baseline)

    def state_dict(self) -> dict:
        return self.baseline.state_dict() if self.baseline is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.baseline is not None:
            self.baseline.load_state_dict(state)

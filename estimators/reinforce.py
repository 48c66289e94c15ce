"""REINFORCE, the score-function estimator: E[f(z) grad log p(z)], no gradient through z.

With ``control_variate=delta`` (Normal distributions), the delta-method control variate h of
``estimators.control_variates`` corrects it: per parameter p, (f - beta_p h) grad_p log p +
beta_p grad_p E[h], with beta fixed (``cv_coefficient``, 1.0) or ``estimated`` from separate draws.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, Estimator, MultiSample, register, score_surrogate
from estimators.control_variates import (
    COEFFICIENT_DRAWS,
    TakesControlVariate,
    by_parameter,
    estimated_coefficient,
    event_dims,
    expand_event,
    score_terms,
    scores,
)
from estimators.objectives import LogJoint, Objective


@register
class Reinforce(TakesControlVariate, MultiSample, Estimator):
    """The plain score-function estimator, without a baseline; optionally with the delta-method
    control variate."""

    name = "reinforce"
    title = "REINFORCE"
    objectives = ("elbo", "iwae")

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z = dist.sample((num_samples,))
        fz = f(z)
        cv = self.control_variate
        if cv is None:
            return score_surrogate(fz, dist.log_prob(z))
        n = event_dims(dist)
        e = cv.expand(dist, f)
        hz = cv.h(e, z)

        def jacobians() -> dict[str, torch.Tensor]:
            # Per-draw score-function gradients of f and of h on draws apart from z, so that
            # beta is independent of the estimate's draws and the estimate stays unbiased.
            z2 = dist.sample((COEFFICIENT_DRAWS,))
            with torch.no_grad():
                f2, h2 = expand_event(f(z2), n), expand_event(cv.h(e, z2), n)
            return {
                p: estimated_coefficient(f2 * s, h2 * s, n) for p, s in scores(dist, z2).items()
            }

        beta = self.coefficients(jacobians)
        signal = {p: expand_event(fz.detach() - b * hz, n) for p, b in beta.items()}
        out = fz + score_terms(dist, z, signal)
        for p, part in by_parameter(dist).items():
            expected = cv.expectation(e, part)
            out = out + beta[p] * (expected - expected.detach())
        return out

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        """The score function of the whole estimate: (L - b) grad sum_k log q(z_k) plus L's
        gradient at the drawn z (b = 0 here; ``reinforce_baseline`` supplies one)."""
        return objective_score_surrogate(dist, log_joint, objective, num_samples, lambda L: 0.0)


def objective_score_surrogate(
    dist: Distribution,
    log_joint: LogJoint,
    objective: Objective,
    num_samples: int,
    baseline: Callable[[torch.Tensor], torch.Tensor | float],
) -> torch.Tensor:
    """REINFORCE for a multi-sample objective: each estimate L's draws are its sample, with
    log-probability sum_k log q(z_k); ``baseline(L)`` may not depend on L's own draws."""
    z = dist.sample((num_samples, objective.num_samples))
    log_q = dist.log_prob(z)
    estimate = objective.reduce(log_joint(z) - log_q)
    return score_surrogate(estimate, log_q.sum(1), baseline(estimate))

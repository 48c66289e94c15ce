"""The reparameterization (pathwise) estimator: gradients flow through z = g(eps; params).

With ``control_variate=delta`` (Normal distributions), the delta-method control variate h of
``estimators.control_variates`` corrects it: per parameter p, d f(x)/dp - beta_p (d h(x)/dp -
d E[h]/dp), with beta fixed (``cv_coefficient``, 1.0) or ``estimated`` from separate draws. For a
quadratic f, h = f and beta = 1 leaves the exact gradient.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, Estimator, MultiSample, base_distribution, register
from estimators.control_variates import (
    COEFFICIENT_DRAWS,
    TakesControlVariate,
    by_parameter,
    estimated_coefficient,
    event_dims,
)
from estimators.objectives import LogJoint, Objective


@register
class Reparam(TakesControlVariate, MultiSample, Estimator):
    """f at ``dist.rsample()``; for a Normal, z = mu + sigma * eps with eps ~ N(0, 1)."""

    name = "reparam"
    title = "Reparameterization"
    differentiates_f = True
    objectives = ("elbo", "iwae")

    def supports(self, dist: Distribution) -> bool:
        """Distributions with a reparameterized sampler (``rsample``); a Normal only with a
        control variate."""
        return dist.has_rsample and super().supports(dist)

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        x = dist.rsample((num_samples,))
        fz = f(x)
        cv = self.control_variate
        if cv is None:
            return fz
        n = event_dims(dist)
        e = cv.expand(dist, f)
        normal = base_distribution(dist)
        loc, scale = normal.loc.detach(), normal.scale.detach()

        def jacobians() -> dict[str, torch.Tensor]:
            # Per-draw pathwise gradients of f and of h on draws apart from x, so that beta is
            # independent of the estimate's draws and the estimate stays unbiased.
            x2 = dist.sample((COEFFICIENT_DRAWS,)).requires_grad_()
            with torch.enable_grad():
                (gf,) = torch.autograd.grad(f(x2).sum(), x2)
            gh = cv.grad_h(e, x2.detach()).reshape(x2.shape)
            eps2 = (x2.detach() - loc) / scale
            return {
                "loc": estimated_coefficient(gf, gh, n),
                "scale": estimated_coefficient(gf * eps2, gh * eps2, n),
            }

        beta = self.coefficients(jacobians)
        eps = ((x - loc) / scale).detach()
        out = fz
        for p, part in by_parameter(dist).items():
            inner = base_distribution(part)
            hp = cv.h(e, inner.loc + inner.scale * eps)  # h(x) with only p's path to x
            expected = cv.expectation(e, part)
            out = out - beta[p] * (hp - hp.detach()) + beta[p] * (expected - expected.detach())
        return out

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        """The pathwise gradient of the objective: through z and through q's parameters in
        log q alike (for IWAE, the gradient whose encoder SNR falls like 1/sqrt(K))."""
        z = dist.rsample((num_samples, objective.num_samples))
        return objective.reduce(log_joint(z) - dist.log_prob(z))

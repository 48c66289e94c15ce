"""The one measurement primitive: each row of a batched pass is its own copy's estimate, exactly
what that copy's own backward pass gives from the same draws; the contract's shape is enforced;
a learned control variate trains and freezes."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

import estimators
from benchmarks.measure import gradient_estimates, leaf_copies, train_control_variate
from estimators.base import Estimator

MU, LOG_SIGMA = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.1, -0.3, 0.2])
PARAMS = {"mu": MU, "log_sigma": LOG_SIGMA}


def normal(copies):
    return Independent(Normal(copies["mu"], copies["log_sigma"].exp()), 1)


def recording(draws: list):
    """f(x) = sum (x - 1)^2, keeping each batch of draws it is called on."""

    def f(x):
        draws.append(x.detach())
        return ((x - 1) ** 2).sum(-1)

    return f


@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_each_row_is_its_copys_own_estimate_from_the_same_draws(name):
    draws = []
    torch.manual_seed(0)
    grads = gradient_estimates(
        estimators.build(name), lambda c: (normal(c), recording(draws)), PARAMS, 4, batch=6
    )
    x = draws[0]  # [4 draws, 6 copies, 3]
    sigma = LOG_SIGMA.exp()
    eps = (x - MU) / sigma
    if name == "reparam":  # d/dmu of (x - 1)^2 is 2 (x - 1); d/dlog_sigma is 2 (x - 1) sigma eps
        mu, log_sigma = 2 * (x - 1), 2 * (x - 1) * sigma * eps
    else:  # f(x) times the score of N(mu, sigma^2) in mu and log sigma
        fx = ((x - 1) ** 2).sum(-1, keepdim=True)
        mu, log_sigma = fx * eps / sigma, fx * (eps**2 - 1)
    torch.testing.assert_close(grads["mu"], mu.mean(0))
    torch.testing.assert_close(grads["log_sigma"], log_sigma.mean(0))
    assert not torch.equal(grads["mu"][0], grads["mu"][1])  # independent draws per copy


def test_one_unbatched_estimate_has_the_parameters_shape():
    grads = gradient_estimates(
        estimators.build("reparam"), lambda c: (normal(c), recording([])), PARAMS, 2, batch=None
    )
    assert {n: g.shape for n, g in grads.items()} == {"mu": (3,), "log_sigma": (3,)}


def test_copies_are_views_of_leaves_that_leave_the_parameters_alone():
    copies = leaf_copies(PARAMS, 5)
    assert copies["mu"].shape == (5, 3) and copies["mu"]._base is not None  # not materialized
    assert not MU.requires_grad


def test_an_estimator_that_breaks_the_shape_contract_is_named():
    class Flat(Estimator):
        name = "flat"

        def estimate(self, dist, f, num_samples):
            return f(dist.rsample((num_samples,))).sum(0)  # drops the draws axis

    with pytest.raises(RuntimeError, match=r"estimator 'flat' returned shape \(6,\); the contract"):
        gradient_estimates(Flat(), lambda c: (normal(c), recording([])), PARAMS, 4, batch=6)


def test_a_learned_control_variate_trains_then_freezes():
    def model(copies):
        dist = Independent(torch.distributions.Bernoulli(logits=copies["theta"]), 1)
        return dist, lambda b: (b.sum(-1) - 0.499) ** 2

    est = estimators.build("relax")
    start = est.learned()
    torch.manual_seed(0)
    train_control_variate(est, model, {"theta": torch.tensor([0.3, -0.2])}, 1, batch=16, steps=5)
    trained = est.learned()
    assert not est.training and all(trained[k] != start[k] for k in start)
    frozen = gradient_estimates(est, model, {"theta": torch.tensor([0.3, -0.2])}, 1, batch=16)
    assert est.learned() == trained and frozen["theta"].shape == (16, 2)

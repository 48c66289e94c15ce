"""Exact moments by running an estimator on every tuple of its draws (``exact.enumerated``):
equal to the closed forms and to a term-by-term enumeration, and what the Bernoulli toy reports
for Double CV and RODEO after training."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from toy_tables import metrics

import estimators
from benchmarks.tasks.toy.bernoulli import total_cost
from benchmarks.tasks.toy.exact.bernoulli import exact_moments
from benchmarks.tasks.toy.exact.enumerated import MAX_TUPLES, enumerated_moments
from estimators.base import Estimator, score_surrogate
from tests import test_double_cv
from tests.test_bernoulli_task import Z_CRIT


@pytest.mark.parametrize(
    "name, opts", [("reinforce", {}), ("reinforce_baseline", {"baseline": "loo"})]
)
@pytest.mark.parametrize("theta, dim, k", [(0.0, 1, 2), (1.3, 3, 3), (-0.4, 2, 4)])
def test_the_score_function_estimators_match_their_closed_forms(name, opts, theta, dim, k):
    est = estimators.build(name, **opts)
    got = enumerated_moments(est, total_cost("square", 0.45), [theta] * dim, k)
    want = exact_moments(name, opts, "square", 0.45, theta, dim, k)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("alpha, k", [(0.7, 2), (-2.5, 3)])
def test_double_cv_matches_the_term_by_term_enumeration(alpha, k):
    """Different logits per bit and a cost whose bits interact (tests/test_double_cv.py)."""
    _, mean, var = test_double_cv.enumerated_moments(alpha, k)
    est = estimators.build("double_cv", alpha=alpha)
    got = enumerated_moments(est, test_double_cv.coupled, list(test_double_cv.THETA), k)
    np.testing.assert_allclose(got, (mean[0], var[0]), rtol=1e-10)


class DrawsTwice(Estimator):
    """REINFORCE that draws a second, unused batch: not enumerable over its K draws."""

    name = "draws_twice"

    def estimate(self, dist, f, num_samples):
        dist.sample((num_samples + 1,))
        z = dist.sample((num_samples,))
        return score_surrogate(f(z), dist.log_prob(z))


def test_an_estimator_with_other_randomness_is_refused_and_size_is_bounded():
    with pytest.raises(RuntimeError, match="enumerated draws are"):
        enumerated_moments(DrawsTwice(), total_cost("square", 0.45), [0.0], 2)
    dim = 9  # 2^(9 * 2) tuples of two draws
    assert 2 ** (dim * 2) > MAX_TUPLES
    assert enumerated_moments(
        estimators.build("double_cv"), total_cost("square", 0.45), [0.0] * dim, 2
    ) == (None, None)


def test_a_baseline_that_keeps_each_draws_own_value_shows_as_bias(monkeypatch):
    from estimators import double_cv, rodeo

    f, theta = total_cost("square", 0.45), [0.8, -0.3]
    p = 1 / (1 + np.exp(-0.8))
    exact = p * (1 - p) * ((1 - 0.45) ** 2 - 0.45**2)
    for module in (double_cv, rodeo):
        est = estimators.build(module.__name__.split(".")[-1])
        mean, _ = enumerated_moments(est, f, theta, 3)
        assert mean == pytest.approx(exact, rel=1e-10)
        with monkeypatch.context() as m:
            m.setattr(module, "leave_one_out", lambda x: x.mean(0).expand_as(x))
            broken, _ = enumerated_moments(est, f, theta, 3)
        assert abs(broken - exact) > 0.1 * abs(exact), module.__name__


@pytest.mark.parametrize("name", ["double_cv", "rodeo"])
def test_the_toy_reports_the_trained_estimators_exact_moments(name):
    table = metrics(
        "bernoulli",
        name,
        {"lr": 0.01},
        theta=1.0,
        dim=2,
        num_samples=3,
        k=[0.45, 2.0],
        cv_steps=100,
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    np.testing.assert_allclose(table.exact_mean, table.exact_grad, rtol=1e-10)
    _, rloo = exact_moments("reinforce_baseline", {"baseline": "loo"}, "square", 0.45, 1.0, 2, 3)
    assert table.exact_var.iloc[0] < rloo  # trained, below the untrained RLOO's
    se_var = (table.grad_var_hi - table.grad_var_lo) / (2 * stats.norm.isf(0.025))
    z_var = (table.grad_var - table.exact_var) / se_var
    assert (z_var.abs() < Z_CRIT).all(), table[["k", "grad_var", "exact_var"]]

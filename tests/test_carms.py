"""CARMS: its orders, its coupled draws against their law (enumerated by inclusion-exclusion), its
pair probabilities against that law's, the enumerated mean equal to the exact gradient, measured
means and variances against the enumerated ones on the categorical toy, a lower variance than
RLOO at equal evaluations, and the reweighting it needs to stay unbiased."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import OneHotCategorical
from toy_tables import assert_agrees, metrics

import estimators
from benchmarks.tasks.toy.exact import categorical as exact
from benchmarks.tasks.toy.exact.copula import copula_tuple_probabilities
from estimators import carms

CPU = torch.device("cpu")
# About 30 two-sided checks at 1e-5 each here: family-wise false alarms below 1e-3.
Z_CRIT = stats.norm.isf(0.5e-5)
LOGITS = [0.5, -1.0, 0.2, 1.5]


@pytest.mark.parametrize("classes", [2, 3, 4, 7])
def test_one_order_per_pair_with_the_pair_at_its_ends(classes):
    orders = carms.pair_orders(classes)
    assert len(orders) == math.comb(classes, 2)
    assert all(sorted(order) == list(range(classes)) for order in orders)
    assert {(order[0], order[-1]) for order in orders} == set(
        itertools.combinations(range(classes), 2)
    )


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("classes", [3, 4])
def test_the_tuple_law_has_categorical_marginals_and_the_estimators_pair_probabilities(n, classes):
    pi = exact.softmax(LOGITS[:classes])
    law = copula_tuple_probabilities(pi, n)
    assert law.sum() == pytest.approx(1.0, abs=1e-12)
    for axis in range(n):
        others = tuple(a for a in range(n) if a != axis)
        np.testing.assert_allclose(law.sum(others), pi, atol=1e-12)
    pairs = law.sum(tuple(range(2, n)))
    first, second = np.indices((classes, classes)).reshape(2, -1)
    z = torch.zeros(n, classes**2, dtype=torch.long)
    z[0], z[1] = torch.from_numpy(first), torch.from_numpy(second)
    p = torch.from_numpy(pi).expand(classes**2, classes)
    ours = carms.pair_probabilities(p, z)[0, 1].reshape(classes, classes)
    np.testing.assert_allclose(ours.numpy(), pairs, atol=1e-12)
    # every pair of distinct classes can be drawn together: the reweighting is defined there
    assert (pairs[~np.eye(classes, dtype=bool)] > 0).all()


@pytest.mark.parametrize("n, classes", [(2, 3), (3, 3), (3, 4), (4, 3)])
def test_coupled_draws_follow_the_enumerated_law(n, classes):
    """A chi-square test of 200,000 n-tuples against the law; tuples the law gives probability 0
    (at n = 2, a class drawn twice where no order lets its interval hold u and 1 - u) must not
    occur at all."""
    torch.manual_seed(0)
    pi = exact.softmax(LOGITS[:classes])
    law = copula_tuple_probabilities(pi, n).ravel()
    draws = carms.coupled_draws(torch.from_numpy(pi).expand(200_000, classes), n)
    index = sum(draws[i] * classes ** (n - 1 - i) for i in range(n))
    counts = np.bincount(index.numpy(), minlength=classes**n)
    assert counts[law == 0].sum() == 0
    expected = law[law > 0] * 200_000
    chi2 = ((counts[law > 0] - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.isf(1e-5, (law > 0).sum() - 1)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("cost", ["abs_diff", "sum_sq", "linear"])
@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0], [0.5, -1.0, 0.2], [2.0, -1.5, 0.1, 0.7]])
def test_the_enumerated_mean_is_the_exact_gradient(n, cost, logits):
    """Unbiasedness summed out exactly over the tuple law (at dim 3: the other variables' terms
    vanish in the mean but not in the variance, which is positive)."""
    mean, var = exact.carms_moments({}, cost, 0.7, logits, 3, n)
    assert mean == pytest.approx(exact.exact_gradient(cost, 0.7, logits), rel=1e-12, abs=1e-15)
    assert var > 0


def test_too_many_terms_give_no_exact_variance():
    assert exact.exact_moments("carms", {}, "abs_diff", 0.5, [0.0] * 10, 4, 5) == (None, None)


@pytest.mark.parametrize(
    "categories, dim, logits, num_samples",
    [
        (3, 4, None, 2),
        (3, 4, None, 3),
        (4, 4, [1.0, -0.5, 0.3, 2.0], 2),  # unequal classes at n = 2: some pairs impossible
        (4, 2, [1.0, -0.5, 0.3, 2.0], 4),
        (2, 3, [0.4, -1.1], 3),
    ],
)
def test_measured_mean_and_variance_agree_with_the_enumerated_ones(
    categories, dim, logits, num_samples
):
    table = metrics(
        "categorical",
        "carms",
        categories=categories,
        dim=dim,
        logits=logits,
        num_samples=num_samples,
        costs=["abs_diff", "sum_sq", "linear"],
        k=[1.0],
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    assert_agrees(table, Z_CRIT)


@pytest.mark.parametrize(
    "n, logits, lower",
    [
        (3, [0.0, 0.0, 0.0], True),
        (4, [0.0, 0.0, 0.0], True),
        (2, [0.5, -1.0, 0.2], True),
        (4, [0.5, -1.0, 0.2], True),
        (2, [2.0, -1.0, 0.0], False),
    ],
)
def test_the_variance_against_rloos_at_as_many_draws(n, logits, lower):
    """Exactly, on the categorical toy (dim 4, abs_diff, k = 1): below RLOO's by at least 4%
    where the docs say the coupling pays, and above it with one class far likelier (the
    docs' counterexample)."""
    _, ours = exact.carms_moments({}, "abs_diff", 1.0, logits, 4, n)
    _, rloo = exact.score_moments({"baseline": "loo"}, "abs_diff", 1.0, logits, 4, n)
    assert (ours < 0.96 * rloo) if lower else (ours > 1.04 * rloo)


def test_without_the_reweighting_the_coupled_draws_are_biased(monkeypatch):
    """RLOO on the coupled draws (every ratio 1) misses the gradient by far more than its
    standard error: the pair probabilities are what keeps CARMS unbiased."""
    table = metrics(
        "categorical", "carms", num_samples=2, logits=[0.5, -1.0, 0.2], costs=["sum_sq"], k=[1.0]
    )
    monkeypatch.setattr(carms, "pair_probabilities", lambda p, z: carms_independent(p, z))
    broken = metrics(
        "categorical", "carms", num_samples=2, logits=[0.5, -1.0, 0.2], costs=["sum_sq"], k=[1.0]
    )
    for t, biased in ((table, False), (broken, True)):
        z = ((t.grad_mean - t.exact_grad) / (t.grad_var / t.n_estimates) ** 0.5).abs().iloc[0]
        assert (z > Z_CRIT) == biased, (t, z)


def test_unbiased_at_many_draws():
    """Where the exact variance is out of reach (C^n tuples), the mean still has the exact
    gradient to meet; the pair probabilities' roots x^(1/(n-1)) are then far from x. (10,000
    estimates: the n (n - 1) pairs make each one cost n^2.)"""
    table = metrics(
        "categorical",
        "carms",
        num_samples=16,
        n_estimates=10_000,
        logits=[1.0, -0.5, 0.3],
        costs=["abs_diff", "sum_sq"],
    )
    assert table.exact_var.isna().all()
    z = (table.grad_mean - table.exact_grad) / (table.grad_var / table.n_estimates) ** 0.5
    assert (z.abs() < Z_CRIT).all(), table[["cost", "k", "grad_mean", "exact_grad"]]


def test_float32_probabilities_give_the_float64_weights():
    """The weights of rare classes' pairs come from differences of order-one copula values: in
    float32 they would be off by far more than float32 rounding of the result."""
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, -9.0, 2.0, -7.0]], dtype=torch.float64).expand(50_000, 4)
    p = torch.softmax(logits, -1)
    z = carms.coupled_draws(p, 8)
    fz = torch.randn(8, 50_000, dtype=torch.float64)
    want = carms.carms_weights(p, z, fz)
    got = carms.carms_weights(p.float(), z, fz.float())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_one_class_is_refused_in_one_line():
    dist = OneHotCategorical(logits=torch.zeros(3, 1))
    with pytest.raises(estimators.ConfigError, match="estimator 'carms' does not apply"):
        estimators.build("carms")(dist, lambda z: z.sum(-1), 2)


def carms_independent(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """p(z_i) p(z_j): the pair probabilities of independent draws."""
    pz = p.expand(z.shape[0], *p.shape).gather(-1, z.unsqueeze(-1)).squeeze(-1)
    return pz[:, None] * pz[None]

"""IndeCateR: unbiased for coupled costs against numpy enumeration, exact (zero variance) for costs
additive across the variables, its enumerated moments against measured ones, N * D * C points in
one call of f, and the categorical toy's table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Independent, OneHotCategorical
from toy_tables import metrics

import estimators
from benchmarks.moments import Moments
from benchmarks.tasks.toy.exact import categorical as exact

# About 30 comparisons at two-sided 1e-6 each: family-wise false alarms below 1e-4.
Z_CRIT = stats.norm.isf(0.5e-6)
B = 40_000  # independent estimates per comparison
LOGITS = np.array([[0.3, -0.8, 1.2, 0.0], [0.0, 0.5, -0.4, 1.0], [-1.0, 0.2, 0.7, -0.3]])
W = np.array([[1.5, -2.0, 0.7, 0.1], [0.4, 1.0, -1.3, 2.0], [-0.6, 0.3, 1.1, -0.9]])


def coupled_np(index: np.ndarray) -> np.ndarray:
    """A cost in which the variables interact: (sum_d W[d, x_d] - 0.5)^2 + x_1 x_2, of the class
    indices [..., D]."""
    picked = W[np.arange(W.shape[0]), index].sum(-1)
    return (picked - 0.5) ** 2 + index[..., 0] * index[..., 1]


def coupled(x: torch.Tensor) -> torch.Tensor:
    """``coupled_np`` of one-hot x [..., D, C], in torch."""
    w = torch.as_tensor(W, dtype=x.dtype)
    index = x @ torch.arange(x.shape[-1], dtype=x.dtype)
    return ((w * x).sum((-2, -1)) - 0.5) ** 2 + index[..., 0] * index[..., 1]


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def enumerated_gradient(logits: np.ndarray, cost) -> np.ndarray:
    """d E[cost(x)] / d logits over independent categoricals, summing all C^D outcomes in numpy:
    sum_x p(x) cost(x) (1[x_d = j] - pi_dj)."""
    pi = softmax(logits)
    dims, classes = logits.shape
    grad = np.zeros_like(logits)
    for index in itertools.product(range(classes), repeat=dims):
        index = np.array(index)
        p = pi[np.arange(dims), index].prod()
        grad += p * cost(index) * (np.eye(classes)[index] - pi)
    return grad


def estimates(make, params: torch.Tensor, f, num_samples: int, batch: int = B, **options):
    """``batch`` independent estimates [batch, *params.shape] of the gradient w.r.t. ``params``."""
    copies = params.expand(batch, *params.shape).clone().requires_grad_()
    out = estimators.build("indecater", **options)(make(copies), f, num_samples)
    return torch.autograd.grad(out.sum() / out.shape[0], copies)[0]


def categorical(logits: torch.Tensor) -> Independent:
    return Independent(OneHotCategorical(logits=logits), 1)


def assert_mean(grads: torch.Tensor, exact_grad, where: str) -> None:
    z = (grads.mean(0) - torch.as_tensor(exact_grad)) / (grads.var(0) / grads.shape[0]).sqrt()
    assert (z.abs() < Z_CRIT).all(), f"{where}: z-scores {z.tolist()}"


@pytest.mark.parametrize("num_samples", [1, 3])
def test_unbiased_for_a_cost_in_which_the_variables_interact(num_samples):
    torch.manual_seed(0)
    grads = estimates(categorical, torch.tensor(LOGITS), coupled, num_samples)
    assert grads.var(0).min() > 1e-3  # not exact: the z-test has something to test
    assert_mean(grads, enumerated_gradient(LOGITS, coupled_np), "categorical")


def test_unbiased_on_bits_of_a_two_dimensional_event():
    """Independent(Bernoulli) over a [2, 2] event: four variables of the classes 0 and 1."""
    theta = np.array([[0.3, -0.8], [1.2, 0.5]])
    a = np.array([1.5, -2.0, 0.7, 1.0])

    def cost_np(bits):
        return (bits @ a - 0.5) ** 2 + bits[..., 0] * bits[..., 3]

    def f(b):
        flat = b.flatten(-2)
        return (flat @ torch.as_tensor(a) - 0.5) ** 2 + flat[..., 0] * flat[..., 3]

    # Bernoulli(sigmoid(t)) is the categorical of logits (0, t): d/dt is d/dlogit_1.
    two_class = np.stack([np.zeros(4), theta.reshape(-1)], -1)
    expected = enumerated_gradient(two_class, cost_np)[:, 1].reshape(2, 2)
    torch.manual_seed(1)
    grads = estimates(lambda t: Independent(Bernoulli(logits=t), 2), torch.tensor(theta), f, 2)
    assert_mean(grads, expected, "bits")


@pytest.mark.parametrize("num_samples", [1, 4])
@pytest.mark.parametrize("family", ["categorical", "bits"])
def test_a_cost_additive_across_the_variables_has_zero_variance(family, num_samples):
    """For f = sum_d c_d(x_d), variable d's term is sum_k grad p_d(k) (c_d(k) + rest), and
    sum_k grad p_d(k) = 0 removes the rest: every estimate is the exact gradient, at any N."""
    torch.manual_seed(2)
    if family == "categorical":
        grads = estimates(
            categorical,
            torch.tensor(LOGITS),
            lambda x: (torch.tensor(W) * x).sum((-2, -1)),
            num_samples,
        )
        expected = enumerated_gradient(LOGITS, lambda i: W[np.arange(3), i].sum())
    else:
        theta, a = np.array([0.3, -0.8, 1.2]), np.array([1.5, -2.0, 0.7])
        grads = estimates(
            lambda t: Independent(Bernoulli(logits=t), 1),
            torch.tensor(theta),
            lambda b: (torch.as_tensor(a) * b).sum(-1) + 5.0,
            num_samples,
        )
        p = 1 / (1 + np.exp(-theta))
        expected = a * p * (1 - p)
    assert grads.std(0).max() < 1e-12
    np.testing.assert_allclose(grads.mean(0).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("num_samples", [1, 3])
def test_the_enumerated_moments_agree_with_measured_ones_for_a_coupled_cost(num_samples):
    """``catlog_moments`` (the categorical toy's entry) from a joint f that is not additive:
    the measured mean (a z-test) and variance (within its interval from the fourth moment) of
    the first variable's class-0 logit, every variable with the same logits as the toy has."""
    row = LOGITS[0]
    logits = np.tile(row, (3, 1))
    index = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1)  # [C, C, C, D]
    mean, var = exact.catlog_moments(softmax(row), coupled_np(index), num_samples)
    assert mean == pytest.approx(enumerated_gradient(logits, coupled_np)[0, 0], rel=1e-10)
    torch.manual_seed(3)
    g = estimates(categorical, torch.tensor(logits), coupled, num_samples)[:, 0, 0]
    m = Moments.of(g)
    assert abs(m.mean - mean) / (m.var / m.n) ** 0.5 < Z_CRIT
    assert abs(m.var - var) / m.var_se < Z_CRIT, (m.var, var)


def test_every_point_is_evaluated_in_one_call_of_f():
    """N * D * C points, as ``evaluations`` says, in one call; the values are f at the draws."""
    logits = torch.tensor(LOGITS).expand(5, 3, 4)
    calls = []

    def f(x):
        calls.append(x)
        return coupled(x)

    est = estimators.build("indecater")
    out = est(categorical(logits), f, 7)
    (points,) = calls
    assert points.shape == (7 * 3 * 4, 5, 3, 4) and out.shape == (7, 5)
    assert est.evaluations(categorical(logits), 7) == 7 * 3 * 4
    assert est.evaluations(OneHotCategorical(logits=logits), 7) == 7 * 4
    assert est.evaluations(Independent(Bernoulli(logits=logits), 2), 2) == 2 * 12 * 2
    # The draw: variable 0 as the points that modify variable 1 keep it, the others as those
    # that modify variable 0 keep them; every point is the draw but at its modified variable.
    grid = points.reshape(3, 4, 7, 5, 3, 4)  # [D, C, N, batch, D, C]
    draw = torch.cat([grid[1, 0, :, :, :1], grid[0, 0, :, :, 1:]], -2)  # [N, batch, D, C]
    kept = (grid == draw).all(-1)  # [D, C, N, batch, D]
    at_modified = grid[torch.arange(3), :, :, :, torch.arange(3)]  # [D, C, N, batch, C]
    assert torch.equal(at_modified, torch.eye(4).reshape(1, 4, 1, 1, 4).expand_as(at_modified))
    modified = torch.eye(3, dtype=torch.bool).reshape(3, 1, 1, 1, 3)
    assert (kept | modified).all(), "a point differs from the draw at a variable it keeps"
    assert torch.equal(out.detach(), coupled(draw)), "the values are not f at the draws"


@pytest.mark.parametrize(
    "categories, dim, logits, num_samples",
    [(3, 4, None, 1), (4, 2, [1.0, -0.5, 0.3, 2.0], 2), (2, 3, [0.4, -1.1], 1)],
)
def test_the_toy_measures_what_the_enumeration_says(categories, dim, logits, num_samples):
    """The toy's f is a sum over the variables, so the enumerated variance is 0 and the measured
    one is rounding; every estimate is the exact gradient."""
    table = metrics(
        "categorical",
        "indecater",
        n_estimates=20_000,
        categories=categories,
        dim=dim,
        logits=logits,
        num_samples=num_samples,
        costs=["abs_diff", "sum_sq", "linear"],
        k=[1.0],
    )
    assert (table.exact_var == 0).all(), table.exact_var  # exactly: rounding set to 0
    assert (table.grad_var < 1e-25).all(), table.grad_var
    np.testing.assert_allclose(table.exact_mean, table.exact_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(table.grad_mean, table.exact_grad, rtol=1e-12, atol=1e-15)


def test_beyond_a_million_outcomes_the_moments_are_unknown():
    assert exact.exact_moments("indecater", {}, "abs_diff", 1.0, [0.0] * 10, 7) == (None, None)
    assert exact.exact_moments("indecater", {}, "abs_diff", 1.0, [0.0] * 10, 6)[1] == 0

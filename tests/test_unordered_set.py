"""The estimators from k distinct draws without replacement (unordered_set, sum_and_sample):
unbiased on a categorical of five classes and on the paper's 3-bit toy, exact when the draws are
the whole support, REINFORCE at k = 1, the set probabilities against sums over orderings, the
categorical toy's enumerated moments against measured ones, and bad input in one line."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
from cli import run
from test_categorical_task import Z_CRIT
from torch.distributions import Bernoulli, Categorical, Independent, OneHotCategorical
from toy_tables import metrics, z_scores

import estimators
from benchmarks.tasks.toy.exact import categorical as exact
from benchmarks.testing import assert_unbiased
from estimators.errors import ConfigError
from estimators.without_replacement import outcome_log_probs, outcomes, subset_probabilities

NAMES = ["unordered_set", "sum_and_sample"]
B = 40_000
LOGITS = np.array([0.3, -0.8, 1.2, 0.1, -0.5])
COSTS = np.array([1.0, -2.0, 0.5, 3.0, 0.7])  # f of the class: no structure to lean on
P0 = np.array([0.6, 0.51, 0.48])  # the paper's 3-bit toy: f(b) = sum_i (b_i - p0_i)^2


def categorical_gradient() -> np.ndarray:
    """d/dlogits E[c(x)] = pi (c - pi.c), in numpy."""
    pi = np.exp(LOGITS) / np.exp(LOGITS).sum()
    return pi * (COSTS - pi @ COSTS)


def three_bit_gradient(eta: float) -> float:
    """d/deta E[f] over the 8 outcomes of 3 bits sharing the logit eta: sum_b p(b) f(b) s(b),
    s(b) = sum_i (b_i - sigmoid(eta)) the score of eta."""
    p = 1 / (1 + np.exp(-eta))
    total = 0.0
    for b in itertools.product([0.0, 1.0], repeat=3):
        b = np.array(b)
        prob = np.prod(np.where(b == 1, p, 1 - p))
        total += prob * ((b - P0) ** 2).sum() * (b - p).sum()
    return total


def categorical_estimates(name: str, k: int, batch: int = B, family=OneHotCategorical):
    """``batch`` estimates [batch, 5] of d/dlogits E[c(x)], one categorical of five classes."""
    logits = torch.tensor(LOGITS).expand(batch, 5).clone().requires_grad_()
    costs = torch.tensor(COSTS)

    def f(z):
        return (z * costs).sum(-1) if family is OneHotCategorical else costs[z]

    out = estimators.build(name)(family(logits=logits), f, k)
    return torch.autograd.grad(out.mean(0).sum(), logits)[0]


def three_bit_estimates(name: str, k: int, eta: float, batch: int = B) -> torch.Tensor:
    """``batch`` estimates [batch] of d/deta E[sum_i (b_i - p0_i)^2], 3 bits of logit eta."""
    eta = torch.full((batch,), eta, dtype=torch.float64, requires_grad=True)
    dist = Independent(Bernoulli(logits=eta[:, None].expand(batch, 3)), 1)
    out = estimators.build(name)(dist, lambda b: ((b - torch.tensor(P0)) ** 2).sum(-1), k)
    return torch.autograd.grad(out.mean(0).sum(), eta)[0]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("name", NAMES)
def test_unbiased_on_one_categorical_of_five_classes(name, k):
    torch.manual_seed(k)
    grads = categorical_estimates(name, k)
    assert_unbiased(grads, torch.tensor(categorical_gradient()), f"{name}, k={k}")


@pytest.mark.parametrize("name", NAMES)
def test_unbiased_on_class_indices(name):
    """A plain Categorical, whose draws are class indices, as the one-hot one."""
    torch.manual_seed(7)
    grads = categorical_estimates(name, 3, family=Categorical)
    assert_unbiased(grads, torch.tensor(categorical_gradient()), f"{name} on Categorical")


@pytest.mark.parametrize("eta", [0.0, -4.0])
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("name", NAMES)
def test_unbiased_on_the_papers_three_bit_toy(name, k, eta):
    torch.manual_seed(k)
    grads = three_bit_estimates(name, k, eta)
    exact_grad = torch.tensor([three_bit_gradient(eta)], dtype=torch.float64)
    assert_unbiased(grads[:, None], exact_grad, f"{name}, k={k}, eta={eta}")


@pytest.mark.parametrize("name", NAMES)
def test_the_whole_support_gives_the_exact_gradient_every_time(name):
    torch.manual_seed(0)
    grads = categorical_estimates(name, 5, batch=200)
    np.testing.assert_allclose(grads, np.broadcast_to(categorical_gradient(), (200, 5)), atol=1e-14)
    for eta in (0.0, -4.0):
        grads = three_bit_estimates(name, 8, eta, batch=200)
        np.testing.assert_allclose(grads, three_bit_gradient(eta), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_one_draw_is_reinforce(name):
    """At k = 1 each estimate is f(z) grad log p(z) at its draw z, to float rounding."""
    torch.manual_seed(0)
    logits = torch.tensor(LOGITS).expand(1000, 5).clone().requires_grad_()
    costs, seen = torch.tensor(COSTS), []
    out = estimators.build(name)(
        OneHotCategorical(logits=logits), lambda z: seen.append(z) or (z * costs).sum(-1), 1
    )
    grads = torch.autograd.grad(out.mean(0).sum(), logits)[0]
    (z,) = seen
    log_p = OneHotCategorical(logits=logits).log_prob(z)
    reinforce = torch.autograd.grad(((z * costs).sum(-1) * log_p).sum(), logits)[0]
    torch.testing.assert_close(grads, reinforce, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_the_set_probabilities_are_sums_over_orderings(k):
    """P(S), P(S \\ s) and P(S \\ {s, s'}) against the numpy sum over orderings of the
    Plackett-Luce probabilities, each from the distribution with the left-out draws removed."""
    rng = np.random.default_rng(k)
    p = rng.dirichlet(np.ones(k + 2), size=6)[:, :k]  # [6 sets, k], mass outside each set > 0
    probs = subset_probabilities(torch.tensor(p.T), torch.tensor(1 - p.sum(1))).numpy()
    for mask in range(2**k):
        kept = [j for j in range(k) if mask >> j & 1]
        removed = p[:, [j for j in range(k) if j not in kept]].sum(1)
        expected = exact.set_probability(p[:, kept], 1 - removed)
        np.testing.assert_allclose(probs[mask], expected, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_measured_mean_and_variance_agree_with_the_enumerated_ones(name):
    """The categorical toy (three classes, four variables: 81 outcomes) at num_samples=3, as
    ``python -m benchmarks.run task=categorical estimator=NAME task.num_samples=3`` runs it."""
    table = metrics("categorical", name, {}, num_samples=3, costs=["abs_diff", "sum_sq"], k=[1.0])
    assert table.exact_var.notna().all()
    np.testing.assert_allclose(table.exact_mean, table.exact_grad, rtol=1e-10)
    z_mean, z_var = z_scores(table)
    assert (z_mean.abs() < Z_CRIT).all(), table[["cost", "grad_mean", "exact_mean"]]
    assert (z_var.abs() < Z_CRIT).all(), table[["cost", "grad_var", "exact_var"]]


@pytest.mark.parametrize("name", NAMES)
def test_the_enumerated_moments_at_the_whole_support_and_beyond_a_million_tuples(name):
    logits = [0.4, -1.0, 0.2, 1.1]
    mean, var = exact.exact_moments(name, {}, "sum_sq", 1.0, logits, dim=1, num_samples=4)
    assert mean == pytest.approx(exact.exact_gradient("sum_sq", 1.0, logits), rel=1e-12)
    assert var == pytest.approx(0.0, abs=1e-12)
    beyond = exact.exact_moments(name, {}, "sum_sq", 1.0, logits[:3], dim=4, num_samples=4)
    assert beyond == (None, None)  # 81 * 80 * 79 * 78 ordered tuples


@pytest.mark.parametrize("name", NAMES)
def test_more_draws_than_outcomes_is_named(name):
    est = estimators.build(name)
    with pytest.raises(ConfigError, match=re.escape(f"num_samples=4: estimator '{name}' draws")):
        est(OneHotCategorical(logits=torch.zeros(3)), lambda z: z.sum(-1), 4)
    big = Independent(Bernoulli(logits=torch.zeros(17)), 1)
    with pytest.raises(ConfigError, match=re.escape("2^17 of them, more than 65536")):
        est(big, lambda z: z.sum(-1), 2)


def test_unordered_set_takes_at_most_twelve_draws():
    est = estimators.build("unordered_set")
    with pytest.raises(ConfigError, match=re.escape("num_samples=13: estimator 'unordered_set'")):
        est(OneHotCategorical(logits=torch.zeros(20)), lambda z: z.sum(-1), 13)


@pytest.mark.parametrize(
    "name, args, message",
    [
        (
            "unordered_set",
            ["task=categorical", "task.num_samples=82"],
            "num_samples=82: estimator 'unordered_set' draws distinct outcomes without "
            "replacement, at most the support size 81 of Independent(OneHotCategorical)",
        ),
        (
            "sum_and_sample",
            ["task=bernoulli", "task.dim=20"],
            "estimator 'sum_and_sample' enumerates the joint outcomes of "
            "Independent(Bernoulli): 2^20 of them, more than 65536",
        ),
    ],
)
def test_bad_input_on_the_command_line_is_one_line_exit_2_and_nothing_on_disk(
    tmp_path, name, args, message
):
    run_dir = tmp_path / "2026-01-01" / "run"
    out = run(f"estimator={name}", *args, f"hydra.run.dir={run_dir}")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line == f"error: {message}"
    assert not run_dir.parent.exists()


def test_every_outcomes_log_probability_is_the_distributions_own():
    """The one-hot outcomes' log-probabilities as one matrix product equal ``log_prob``'s, also
    for a class of probability zero (a -inf logit), which must not turn into NaN."""
    logits = torch.tensor([[[0.3, -math.inf, 1.0], [2.0, -0.5, 0.1]]] * 2, dtype=torch.float64)
    logits[1] += torch.randn(2, 3, dtype=torch.float64)
    dist = Independent(OneHotCategorical(logits=logits), 1)  # batch [2], event [2, 3]
    x = outcomes(dist)
    expected = dist.log_prob(x[:, None]).exp()
    torch.testing.assert_close(outcome_log_probs(dist, x).exp(), expected, rtol=1e-14, atol=0)

"""ARMS: DisARM at n = 2, unbiased at n = 2..8 on both sides of p = 1/2 and near 0 and 1 (and
biased with a wrong scale), the exact toy moments against enumeration and measurement, a lower
variance than RLOO at equal evaluations, and bad input refused in one line."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from cli import run
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

import estimators
from benchmarks.tasks.toy.exact.bernoulli import (
    antithetic_moments,
    arms_moments,
    copula_counts,
    exact_gradient,
    score_moments,
)
from benchmarks.testing import Z_CRIT, assert_unbiased
from estimators import arms
from estimators.errors import ConfigError

# p = 0.011, 0.33, 0.5, 0.6, 0.989: both sides of 1/2 and near 0 and 1
THETA = np.array([-4.5, -0.7, 0.0, 0.4, 4.5])
A = np.array([1.5, -2.0, 0.7, 1.0, -0.3])


def coupled(b: torch.Tensor) -> torch.Tensor:
    """A cost in which the bits interact."""
    return ((torch.as_tensor(A, dtype=b.dtype) * b).sum(-1) - 0.5) ** 2


def enumerated_gradient() -> np.ndarray:
    """d/dtheta E[coupled(b)] = E[f(b) (b - p)], summing all 2^5 bit vectors in numpy."""
    p = 1 / (1 + np.exp(-THETA))
    bits = np.array(list(itertools.product([0.0, 1.0], repeat=len(THETA))))
    prob = np.prod(bits * p + (1 - bits) * (1 - p), axis=1)
    f = (bits @ A - 0.5) ** 2
    return (prob * f) @ (bits - p)


def estimates(name: str, n: int, batch: int, seed: int = 0, **opts) -> torch.Tensor:
    """``batch`` independent estimates [batch, 5] of the gradient at THETA, one per batch row."""
    torch.manual_seed(seed)
    theta = torch.tensor(THETA).expand(batch, -1).clone().requires_grad_()
    out = estimators.build(name, **opts)(Independent(Bernoulli(logits=theta), 1), coupled, n)
    return torch.autograd.grad(out.mean(0).sum(), theta)[0]


@pytest.mark.parametrize("batch_shape", [(7,), (3, 4)])
def test_at_two_draws_it_is_disarm_given_the_same_uniform(batch_shape):
    """DisARM draws one uniform u per bit and pairs b1 = 1[u > 1 - p] with b2 = 1[u < p]; ARMS
    from the coupled uniforms (u1, 1 - u1), which is what its Dirichlet gives at n = 2, returns
    the same values and gradient, on plain and Independent Bernoullis. ARMS mirrors where p > 1/2,
    so its first draw matches b1 in every bit with u1 = u there and u1 = 1 - u elsewhere."""
    shape = (*batch_shape, 5)
    logits = torch.tensor(THETA).expand(shape).clone().requires_grad_()
    for make in (lambda t: Independent(Bernoulli(logits=t), 1), lambda t: Bernoulli(logits=t)):
        # each bit of a plain Bernoulli is its own objective: f elementwise there
        f = coupled if make(logits).event_shape else lambda b: (b - 0.45) ** 2 - 0.3 * b
        torch.manual_seed(3)
        disarm = estimators.build("disarm")(make(logits), f, 2)
        (want,) = torch.autograd.grad(disarm.mean(), logits)
        torch.manual_seed(3)
        u = torch.rand(shape, dtype=logits.dtype)  # the uniform DisARM drew
        u1 = torch.where(logits > 0, u, 1 - u)
        got = arms.arms_from_uniforms(make(logits), f, torch.stack([u1, 1 - u1]))
        (have,) = torch.autograd.grad(got.mean(), logits)
        assert (want != 0).float().mean() > 0.2
        torch.testing.assert_close(got, disarm, rtol=0, atol=0)
        torch.testing.assert_close(have, want, rtol=1e-12, atol=1e-15)
    u = arms.dirichlet_uniforms(2, shape, logits)
    torch.testing.assert_close(u[1], 1 - u[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_unbiased_at_n_draws(n):
    assert_unbiased(estimates("arms", n, 40_000), torch.tensor(enumerated_gradient()), f"n={n}")


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_the_weights_are_unbiased_under_the_exact_distribution_of_the_draws(n):
    """E[g] for f(b) = b, exactly: ``arms_scale`` on every pattern of n coupled bits, weighted by
    its probability from ``copula_counts`` (inclusion-exclusion, independent of the estimator),
    is p (1 - p) for p from 1e-4 to 1 - 1e-4. The sampling tests above have no power against a
    scale that is off by 1% near p = 0 or 1; this one has."""
    theta = torch.tensor([-9.0, -4.5, -1.5, -0.7, -0.1, 0.0, 0.1, 0.4, 0.7, 2.0, 4.5, 9.0])
    theta = theta.double()
    patterns = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)
    ones = patterns.sum(1).long()
    comb = torch.tensor([float(math.comb(n, int(m))) for m in ones], dtype=torch.float64)
    for t in theta:
        p = torch.sigmoid(t)
        prob = torch.tensor(copula_counts(n, float(p)))[ones] / comb  # [2^n]
        b = patterns.T.unsqueeze(-1)  # [n, 2^n, 1]: f(b) = b, one logit
        g = ((b - b.mean(0)) * (b - p)).mean(0)[:, 0] * arms.arms_scale(t, n)
        assert float(prob @ g) == pytest.approx(float(p * (1 - p)), rel=1e-9), float(t)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_a_wrong_scale_is_caught(n, monkeypatch):
    """The scale of independent draws (joint q^2: RLOO's) on the coupled ones is biased."""
    monkeypatch.setattr(arms, "copula_joint", lambda q, n: q**2)
    with pytest.raises(AssertionError, match="z-scores"):
        assert_unbiased(estimates("arms", n, 40_000), torch.tensor(enumerated_gradient()))


def test_the_coupled_draws_are_bernoulli_with_the_copulas_joint():
    """Each draw's marginal p and each pair's P(b_i = b_j = 1), against the copula's closed form
    C(q, q) = (2 q^(1/(n-1)) - 1)_+^(n-1), mirrored to 2p - 1 + C(q, q) above p = 1/2."""
    torch.manual_seed(0)
    n, draws = 5, 200_000
    theta = torch.tensor(THETA)
    b = arms.arms_bits(arms.dirichlet_uniforms(n, (draws, 5), theta), theta)  # [n, draws, 5]
    p = torch.sigmoid(theta)
    q = torch.minimum(p, 1 - p)
    c = (2 * q ** (1 / (n - 1)) - 1).clamp(min=0) ** (n - 1)
    joint = torch.where(p > 0.5, 2 * p - 1 + c, c)
    pairs = ((b[0] * b[3]).mean(0), joint), ((b[1] * b[4]).mean(0), joint)
    for got, want in ((b.mean(1), p), *pairs):
        se = (want * (1 - want) / draws).sqrt()
        assert ((got - want).abs() <= Z_CRIT * se).all(), (got, want)


def test_the_count_distribution_against_sampled_counts():
    """``copula_counts`` (inclusion-exclusion) against the count of ones among the estimator's own
    coupled bits, each class within Z_CRIT binomial standard errors."""
    torch.manual_seed(1)
    draws = 200_000
    for n in (3, 4, 8):
        for theta in (-1.2, 0.0, 0.4, 3.0):
            t = torch.tensor(theta, dtype=torch.float64)
            b = arms.arms_bits(arms.dirichlet_uniforms(n, (draws,), t), t)
            seen = np.bincount(b.sum(0).int().numpy(), minlength=n + 1) / draws
            want = copula_counts(n, float(torch.sigmoid(t)))
            se = np.sqrt(want * (1 - want) / draws) + 1e-12
            assert (np.abs(seen - want) < Z_CRIT * se).all(), (n, theta, seen, want)


@pytest.mark.parametrize("n", [24, 64, 128])
@pytest.mark.parametrize("theta", [-4.5, -0.7, 0.4, 3.0])
def test_the_count_law_stays_exact_at_many_draws(n, theta):
    """At n where float inclusion-exclusion loses every digit (terms 2^n times the result):
    a probability law whose mean count is n p and whose pair moment E[m (m - 1)] / (n (n - 1))
    is the copula's closed-form joint (``arms.copula_joint``, mirrored above p = 1/2)."""
    p = float(torch.sigmoid(torch.tensor(theta, dtype=torch.float64)))
    w = copula_counts(n, p)
    m = np.arange(n + 1)
    q = min(p, 1 - p)
    c = float(arms.copula_joint(torch.tensor(q, dtype=torch.float64), n))
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, rel=1e-14)
    assert w @ m == pytest.approx(n * p, rel=1e-12)
    joint = c if p <= 0.5 else 2 * p - 1 + c
    assert w @ (m * (m - 1)) / (n * (n - 1)) == pytest.approx(joint, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("dim", [1, 4])
@pytest.mark.parametrize("theta", [-3.0, -0.5, 0.0, 0.7, 2.5])
def test_the_toys_exact_moments(theta, dim):
    """At n = 2 the count sum gives DisARM's quadrature; at every n its mean is the gradient."""
    for k in (0.45, 0.499, 2.0):
        mean, var = arms_moments("arms", {}, "square", k, theta, dim, 2)
        d_mean, d_var = antithetic_moments("disarm", {}, "square", k, theta, dim, 2)
        assert mean == pytest.approx(d_mean, rel=1e-12)
        assert var == pytest.approx(d_var, rel=1e-9, abs=1e-18)
        for n in (3, 4, 8, 16, 64):
            mean, _ = arms_moments("arms", {}, "square", k, theta, dim, n)
            assert mean == pytest.approx(exact_gradient("square", k, theta), rel=1e-10)


@pytest.mark.parametrize("n, theta, dim", [(3, 0.0, 1), (4, -1.0, 3), (8, 1.5, 2), (48, -0.5, 2)])
def test_the_toys_exact_variance_against_a_measured_one(n, theta, dim):
    """The sample variance of 200,000 estimates on the toy's cost, within Z_CRIT of the exact
    one, the standard error from the estimates' fourth moment."""
    torch.manual_seed(2)
    batch, k = 200_000, 0.45
    logits = torch.full((batch, dim), theta, dtype=torch.float64, requires_grad=True)
    out = arms.ARMS()(Independent(Bernoulli(logits=logits), 1), lambda b: ((b - k) ** 2).sum(-1), n)
    g = torch.autograd.grad(out.mean(0).sum(), logits)[0][:, 0]
    centred = g - g.mean()
    var = centred.pow(2).mean()
    se = ((centred.pow(4).mean() - var**2) / batch).sqrt()
    _, exact = arms_moments("arms", {}, "square", k, theta, dim, n)
    assert abs(float(var) - exact) < Z_CRIT * float(se), (float(var), exact)


def toy_variances(name: str, k: float, theta: float, dim: int, **opts) -> tuple[float, float]:
    """Sample variance and its standard error of 200,000 estimates from 4 draws on the Bernoulli
    toy's cost sum_j (b_j - k)^2, for the first logit."""
    torch.manual_seed(4)
    batch = 200_000
    logits = torch.full((batch, dim), theta, dtype=torch.float64, requires_grad=True)
    est = estimators.build(name, **opts)
    out = est(Independent(Bernoulli(logits=logits), 1), lambda b: ((b - k) ** 2).sum(-1), 4)
    g = torch.autograd.grad(out.mean(0).sum(), logits)[0][:, 0]
    centred = g - g.mean()
    var = centred.pow(2).mean()
    return float(var), float(((centred.pow(4).mean() - var**2) / batch).sqrt())


# Measured, seed 4, 200,000 estimates each (variance +- standard error; exact in brackets):
#   k = 0.45, theta = 0, dim 1:   ARMS 1.53e-05 +- 1.0e-07 (1.52e-05), RLOO 1.04e-04 +- 4.5e-07
#   k = 0.499, theta = 0, dim 1:  ARMS 6.12e-09 +- 4.1e-11 (6.08e-09), RLOO 4.17e-08 +- 1.8e-10
#   k = 0.45, theta = 2, dim 3:   ARMS 1.95e-04 +- 8.1e-07 (1.94e-04), RLOO 2.44e-04 +- 9.8e-07
#   k = 0.499, theta = -1, dim 3: ARMS 1.17e-07 +- 3.2e-10 (1.17e-07), RLOO 1.72e-07 +- 4.9e-10
# (RLOO's exact: 1.04e-04, 4.17e-08, 2.44e-04, 1.71e-07): ratios 0.15, 0.15, 0.80, 0.68.
@pytest.mark.parametrize(
    "k, theta, dim", [(0.45, 0.0, 1), (0.499, 0.0, 1), (0.45, 2.0, 3), (0.499, -1.0, 3)]
)
def test_less_variance_than_rloo_at_four_draws(k, theta, dim):
    """Measured: ARMS's variance lies below RLOO's by more than Z_CRIT standard errors of the
    difference; and the exact variances of the toy agree."""
    arms_var, arms_se = toy_variances("arms", k, theta, dim)
    rloo_var, rloo_se = toy_variances("reinforce_baseline", k, theta, dim, baseline="loo")
    assert rloo_var - arms_var > Z_CRIT * np.hypot(arms_se, rloo_se), (arms_var, rloo_var)
    _, arms_exact = arms_moments("arms", {}, "square", k, theta, dim, 4)
    _, rloo_exact = score_moments(
        "reinforce_baseline", {"baseline": "loo"}, "square", k, theta, dim, 4
    )
    assert arms_exact < rloo_exact


@pytest.mark.parametrize(
    "dist, n, message",
    [
        (
            Independent(Bernoulli(logits=torch.zeros(2, 3)), 1),
            1,
            "needs an integer num_samples >= 2",
        ),
        (Bernoulli(logits=torch.zeros(2)), 1, "needs an integer num_samples >= 2"),
        (Normal(torch.zeros(2), 1.0), 4, "estimator 'arms' does not apply to Normal; estimators"),
        (OneHotCategorical(logits=torch.zeros(2, 3)), 4, "does not apply to OneHotCategorical"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_f_is_called(dist, n, message):
    seen = []
    with pytest.raises(ConfigError) as error:
        arms.ARMS()(dist, lambda z: seen.append(z) or z.sum(-1), n)
    assert message in str(error.value) and "\n" not in str(error.value) and not seen


def test_odd_draws_are_fine_and_evaluations_count_them():
    bits = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
    assert arms.ARMS()(bits, lambda b: b.sum(-1), 3).shape == (3, 2)
    assert arms.ARMS().evaluations(bits, 5) == 5


def test_the_command_line_refuses_one_draw(tmp_path):
    run_dir = tmp_path / "run"
    out = run("task=bernoulli", "estimator=arms", "task.num_samples=1", f"hydra.run.dir={run_dir}")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "task.num_samples=1: estimator 'arms' needs an integer num_samples >= 2" in line
    assert not run_dir.exists()

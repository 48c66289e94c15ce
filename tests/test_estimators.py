"""The estimator contract, unbiasedness with variance-derived tolerances, and bad options."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Independent, Normal

import estimators
from estimators.base import Estimator, score_surrogate
from estimators.baselines import Supplied

# Every registered estimator, with every baseline that needs no caller: a new estimator is tested
# by registering it.
NORMAL = Normal(torch.zeros(2), torch.ones(2))
CONFIGS = [
    pytest.param(name, opts, id=name + "".join(f"-{v}" for v in opts.values()))
    for name in estimators.names()
    for opts in (
        [{"baseline": "loo"}, {"baseline": "ema"}] if name == "reinforce_baseline" else [{}]
    )
    if estimators.build(name, **opts).supports(NORMAL)  # discrete ones: test_discrete_estimators
]
# Bonferroni: about 200 comparisons in this module, each at two-sided 1e-6, keep the family-wise
# false-alarm rate under 1e-3 even if the seeds change.
Z_CRIT = stats.norm.isf(0.5e-6)
DIM = 3
B = 40_000  # independent estimates per test


def batched_normal(batch: int, mu0: torch.Tensor, log_sigma0: torch.Tensor):
    """``batch`` independent copies of N(mu0, exp(log_sigma0)^2) with leaf parameters per copy."""
    mu = mu0.expand(batch, DIM).clone().requires_grad_()
    log_sigma = log_sigma0.expand(batch, DIM).clone().requires_grad_()
    return mu, log_sigma, Independent(Normal(mu, log_sigma.exp()), 1)


MU0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
LOG_SIGMA0 = torch.tensor([0.0, -0.5, 0.3], dtype=torch.float64)
A = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
C = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
SIGMA0 = LOG_SIGMA0.exp()

# f and the exact gradients of E[f] with respect to (mu, log sigma).
FUNCTIONS = {
    "constant": (lambda x: 0.0 * x.sum(-1) + 3.0, 0 * MU0, 0 * MU0),
    "linear": (lambda x: (A * x).sum(-1), A, 0 * MU0),
    # E[sum a (x - c)^2] = sum a ((mu - c)^2 + sigma^2)
    "quadratic": (
        lambda x: (A * (x - C) ** 2).sum(-1),
        2 * A * (MU0 - C),
        2 * A * SIGMA0**2,
    ),
}


def per_estimate_gradients(est: Estimator, f, num_samples: int, batch: int = B):
    mu, log_sigma, dist = batched_normal(batch, MU0, LOG_SIGMA0)
    out = est(dist, f, num_samples)
    return torch.autograd.grad(out.mean(0).sum(), (mu, log_sigma), materialize_grads=True)


def assert_unbiased(grads: torch.Tensor, exact: torch.Tensor) -> None:
    """Each coordinate's mean lies within Z_CRIT standard errors of the exact gradient."""
    mean, var = grads.mean(0), grads.var(0)
    se = (var / grads.shape[0]).sqrt()
    # An exact estimator (zero variance) may still scatter by float rounding; hold it to the
    # exact value instead of dividing by a rounding-sized standard error.
    exact_zero_var = var.sqrt() <= 1e-9 * (mean.abs() + exact.abs() + 1)
    assert torch.allclose(mean[exact_zero_var], exact[exact_zero_var], atol=1e-12)
    z = ((mean - exact) / se)[~exact_zero_var]
    assert (z.abs() < Z_CRIT).all(), f"z-scores {z.tolist()} exceed {Z_CRIT:.2f}"


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name, opts", CONFIGS)
def test_unbiased_on_polynomials(name, opts, function):
    torch.manual_seed(0)
    est = estimators.build(name, **opts)
    f, grad_mu, grad_log_sigma = FUNCTIONS[function]
    est(batched_normal(10, MU0, LOG_SIGMA0)[2], f, 2)  # a moving average gets its first value
    g_mu, g_log_sigma = per_estimate_gradients(est, f, num_samples=2)
    assert_unbiased(g_mu, grad_mu)
    assert_unbiased(g_log_sigma, grad_log_sigma)


class SelfInclusiveBaseline(Estimator):
    """A wrong estimator: the baseline includes the sample's own f, which biases it by (K-1)/K."""

    name = "self_inclusive"

    def estimate(self, dist, f, num_samples):
        z = dist.sample((num_samples,))
        fz = f(z)
        return score_surrogate(fz, dist.log_prob(z), fz.detach().mean(0))


def test_unbiasedness_check_catches_a_biased_estimator():
    torch.manual_seed(0)
    f, grad_mu, _ = FUNCTIONS["quadratic"]
    g_mu, _ = per_estimate_gradients(SelfInclusiveBaseline(), f, num_samples=2)
    with pytest.raises(AssertionError, match="z-scores"):
        assert_unbiased(g_mu, grad_mu)


@pytest.mark.parametrize("name, opts", CONFIGS)
def test_values_equal_f_and_shapes_follow_the_contract(name, opts):
    torch.manual_seed(1)
    seen = []
    w = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)  # a "decoder" parameter of f

    def f(x):
        seen.append(x.detach())
        return (w * x).sum(-1)

    mu = torch.zeros(5, DIM, requires_grad=True)
    dist = Independent(Normal(mu, torch.ones(5, DIM)), 1)
    out = estimators.build(name, **opts)(dist, f, 4)
    assert out.shape == (4, 5)
    (z,) = seen
    assert z.shape == (4, 5, DIM)
    torch.testing.assert_close(out.detach(), (w.detach() * z).sum(-1))
    # Parameters of f get the pathwise gradient: d mean(w . z) / dw = mean z.
    (grad_w,) = torch.autograd.grad(out.mean(), w)
    torch.testing.assert_close(grad_w, z.mean((0, 1)))


def test_reparam_samples_follow_the_normal_and_carry_the_gradient():
    torch.manual_seed(2)
    mu = torch.tensor(1.5, requires_grad=True)
    sigma = torch.tensor(0.7, requires_grad=True)
    seen = []
    out = estimators.build("reparam")(Normal(mu, sigma), lambda z: seen.append(z) or z, 20_000)
    (z,) = seen
    assert z.requires_grad
    assert stats.kstest(z.detach().numpy(), "norm", args=(1.5, 0.7)).pvalue > 1e-3
    # A wrong scale is rejected by the same test, so it has power at this sample size.
    assert stats.kstest(z.detach().numpy(), "norm", args=(1.5, 0.75)).pvalue < 1e-3
    g_mu, g_sigma = torch.autograd.grad(out.mean(), (mu, sigma))
    eps = (z.detach() - 1.5) / 0.7
    assert g_mu.item() == pytest.approx(1.0)
    assert g_sigma.item() == pytest.approx(eps.mean().item(), abs=1e-5)


def test_score_function_estimators_do_not_differentiate_through_the_sample():
    seen = []
    mu = torch.tensor(0.0, requires_grad=True)
    estimators.build("reinforce")(Normal(mu, 1.0), lambda z: seen.append(z) or z, 3)
    assert not seen[0].requires_grad


def test_build_rejects_an_unknown_name_and_lists_the_known_ones():
    with pytest.raises(ValueError, match="known estimators: " + ", ".join(estimators.names())):
        estimators.build("nope")


def test_reparam_without_rsample_names_the_estimator_and_the_distribution():
    est = estimators.build("reparam")
    with pytest.raises(ValueError, match=r"'reparam'.*Bernoulli"):
        est(Bernoulli(probs=torch.tensor(0.3)), lambda z: z, 1)


def test_leave_one_out_needs_two_samples():
    est = estimators.build("reinforce_baseline", baseline="loo")
    with pytest.raises(ValueError, match="num_samples=1.*>= 2"):
        est(Normal(torch.tensor(0.0), 1.0), lambda z: z, 1)


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"baseline": "mean"}, "baseline='mean'.*loo, ema, hook"),
        ({"decay": 1.0}, r"decay=1.0.*\[0, 1\)"),
    ],
)
def test_baseline_options_are_checked(opts, match):
    with pytest.raises(ValueError, match=match):
        estimators.build("reinforce_baseline", **opts)


def test_leave_one_out_baseline_is_the_mean_of_the_others():
    torch.manual_seed(3)
    mu = torch.tensor(0.2, requires_grad=True)
    dist = Normal(mu, 1.0)
    seen = []
    out = estimators.build("reinforce_baseline")(dist, lambda z: seen.append(z) or z**2, 3)
    (z,) = seen
    fz = z**2
    b = torch.stack([(fz.sum() - fz[i]) / 2 for i in range(3)])
    expected = ((fz - b) * (z - 0.2)).mean()  # d/dmu log N(z; mu, 1) = z - mu
    (grad,) = torch.autograd.grad(out.mean(), mu)
    assert grad.item() == pytest.approx(expected.item(), rel=1e-6)


def test_hook_baseline_uses_the_callers_value_per_sample():
    torch.manual_seed(4)
    mu = torch.tensor(0.0, requires_grad=True)
    est = estimators.build("reinforce_baseline", baseline="hook")
    with pytest.raises(ValueError, match="hook"):
        est(Normal(mu, 1.0), lambda z: z, 2)
    supplied = Supplied()
    est = estimators.build("reinforce_baseline", baseline=supplied)
    seen = []
    with supplied.given(torch.tensor(10.0)):
        out = est(Normal(mu, 1.0), lambda z: seen.append(z) or z, 2)
    (grad,) = torch.autograd.grad(out.mean(), mu)
    z = seen[0]
    assert grad.item() == pytest.approx(((z - 10.0) * z).mean().item(), rel=1e-6)


def test_moving_average_uses_only_earlier_calls_and_round_trips_its_state():
    est = estimators.build("reinforce_baseline", baseline="ema", decay=0.5)
    dist = Normal(torch.tensor(0.0, requires_grad=True), 1.0)
    est(dist, lambda z: torch.full_like(z, 4.0), 2)
    assert est.baseline.ema.item() == 4.0
    est(dist, lambda z: torch.full_like(z, 2.0), 2)
    assert est.baseline.ema.item() == 3.0
    fresh = estimators.build("reinforce_baseline", baseline="ema", decay=0.5)
    fresh.load_state_dict(est.state_dict())
    assert fresh.baseline.ema.item() == 3.0
    assert math.isclose(fresh.baseline.decay, 0.5)

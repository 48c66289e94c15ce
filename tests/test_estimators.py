"""The estimator contract, unbiasedness with variance-derived tolerances, and bad options: the
checks of ``benchmarks.testing`` on every registered estimator, shown to fail on wrong ones."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Normal

import estimators
from benchmarks.testing import check_contract, check_run, check_unbiased
from estimators.base import Estimator, ObjectiveOnly, score_surrogate
from estimators.baselines import Supplied

CONTROL_VARIATES = [
    {"control_variate": "delta"},
    {"control_variate": "delta", "cv_coefficient": "estimated"},
]

# Every registered estimator of E[f] (``plain``), with every control variate or baseline that needs
# no caller: a new estimator is tested by registering it. Those of multi-sample objectives only
# are tested in tests/test_objectives.py.
CONFIGS = [
    pytest.param(name, opts, id=name + "".join(f"-{v}" for v in opts.values()))
    for name in estimators.names()
    if not issubclass(estimators.REGISTRY[name], ObjectiveOnly)
    for opts in (
        [{"baseline": b} for b in ("loo", "ema", "optimal")]
        if name == "reinforce_baseline"
        else [{}, *CONTROL_VARIATES]
        if name in ("reinforce", "reparam")
        else [{}]
    )
]


@pytest.mark.parametrize("name, opts", CONFIGS)
def test_the_contract(name, opts):
    check_contract(name, **opts)


@pytest.mark.parametrize("name, opts", CONFIGS)
def test_unbiased_where_it_claims_to_be(name, opts):
    check_unbiased(name, **opts)


@pytest.mark.parametrize("name, opts", CONFIGS)
def test_a_short_run_from_its_config(name, opts):
    check_run(name, **opts)


class SelfInclusiveBaseline(Estimator):
    """A wrong estimator: the baseline includes the sample's own f, which biases it by (K-1)/K."""

    name = "self_inclusive"

    def estimate(self, dist, f, num_samples):
        z = dist.sample((num_samples,))
        fz = f(z)
        return score_surrogate(fz, dist.log_prob(z), fz.detach().mean(0))


class Averaged(Estimator):
    """A wrong estimator: the mean over the draws, of shape [*batch_shape]."""

    name = "averaged"

    def estimate(self, dist, f, num_samples):
        return f(dist.rsample((num_samples,))).mean(0)


class Forgetful(Estimator):
    """A wrong estimator: a moving-average baseline that its state_dict leaves out."""

    name = "forgetful"

    def __init__(self):
        self.average = 0.0

    def estimate(self, dist, f, num_samples):
        z = dist.sample((num_samples,))
        fz = f(z)
        out = score_surrogate(fz, dist.log_prob(z), self.average)
        self.average = 0.5 * self.average + 0.5 * fz.detach().mean().item()
        return out


class Unrefusing(SelfInclusiveBaseline):
    """A wrong estimator: it says it serves only a Normal but never checks."""

    name = "unrefusing"

    def supports(self, dist):
        return isinstance(dist.base_dist, Normal)

    def __call__(self, dist, f, num_samples):
        return self.estimate(dist, f, num_samples)


@pytest.mark.parametrize(
    "wrong, check, match",
    [
        (SelfInclusiveBaseline, check_unbiased, "Normal toy, linear cost, d/dmu: z-scores"),
        (Averaged, check_contract, r"on Normal: result of shape \[5\]; .* = \[4, 5\]"),
        (Forgetful, check_contract, "on Normal: a copy loaded from its state_dict differs"),
        (
            Unrefusing,
            check_contract,
            r"on Bernoulli \(not supported\): ran with num_samples=4 instead",
        ),
    ],
)
def test_the_checks_fail_a_wrong_estimator(wrong, check, match, monkeypatch):
    monkeypatch.setitem(estimators.REGISTRY, wrong.name, wrong)
    with pytest.raises(AssertionError, match=match):
        check(wrong.name)


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

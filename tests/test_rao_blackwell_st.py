"""Gumbel-Rao (Rao-Blackwellized straight-through Gumbel-softmax): its conditional Gumbels against
rejection sampling and the Gumbel law, the same mean as straight-through at every K and the same
law at K = 1, a variance that falls with K, its exact moments on the toys at K = 1, and its
option refusals."""

from __future__ import annotations

import re

import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Independent, OneHotCategorical

import estimators
from benchmarks.moments import Moments
from benchmarks.tasks.toy.exact import bernoulli as bernoulli_exact
from benchmarks.tasks.toy.exact import categorical as categorical_exact
from estimators.errors import ConfigError
from estimators.rao_blackwell_st import conditional_gumbel

# About 40 comparisons at two-sided 1e-6 each: family-wise false alarms below 1e-4.
Z_CRIT = stats.norm.isf(0.5e-6)
P_MIN = 1e-6
B = 40_000  # independent estimates per comparison
LOGITS = torch.tensor([2.0, -1.0, 0.5, -3.0, 0.0], dtype=torch.float64)


def test_the_conditional_gumbels_put_the_argmax_at_the_draw_and_mix_to_standard_gumbels():
    """Over D ~ Cat(softmax(logits)), G | D has argmax(logits + G) = D always, and its mixture is
    the unconditional law: each coordinate standard Gumbel (Kolmogorov-Smirnov)."""
    torch.manual_seed(0)
    d = OneHotCategorical(logits=LOGITS).sample((100_000,))
    g = conditional_gumbel(LOGITS, d, 3)  # [3, n, C]
    assert torch.equal((LOGITS + g).argmax(-1), d.argmax(-1).expand(3, -1))
    for coordinate in g[0].T:
        assert stats.kstest(coordinate.numpy(), stats.gumbel_r.cdf).pvalue > P_MIN
    # The three draws per D are independent given D, not copies.
    assert not torch.equal(g[0], g[1])


@pytest.mark.parametrize("cls", [0, 2, 4])
def test_the_conditional_gumbels_given_one_class_match_rejection_sampling(cls):
    """G | argmax(logits + G) = cls against unconditional Gumbels kept where the argmax is cls,
    each coordinate by a two-sample Kolmogorov-Smirnov test."""
    torch.manual_seed(1)
    free = -torch.log(-torch.log(torch.rand(400_000, 5, dtype=torch.float64)))
    kept = free[(LOGITS + free).argmax(-1) == cls][:30_000]
    d = torch.nn.functional.one_hot(torch.tensor(cls), 5).to(LOGITS.dtype).expand(30_000, 5)
    g = conditional_gumbel(LOGITS, d, 1)[0]
    for ours, theirs in zip(g.T, kept.T, strict=True):
        assert stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > P_MIN


W = torch.tensor([[1.5, -2.0, 0.7], [0.4, 1.0, -1.3]], dtype=torch.float64)
THETA = torch.tensor([[0.3, -0.8, 1.2], [0.0, 0.5, -0.4]], dtype=torch.float64)


def coupled(x: torch.Tensor) -> torch.Tensor:
    """A differentiable cost of one-hot x [..., 2, 3] in which the variables interact."""
    return ((W * x).sum((-2, -1)) - 0.5) ** 2


def bits_cost(b: torch.Tensor) -> torch.Tensor:
    return ((W[0] * b).sum(-1) - 0.5) ** 2


FAMILIES = {
    "categorical": (lambda t: Independent(OneHotCategorical(logits=t), 1), THETA, coupled),
    "bits": (lambda t: Independent(Bernoulli(logits=t), 1), THETA[0], bits_cost),
}


def estimates(name: str, family: str, seed: int, **options) -> torch.Tensor:
    """B independent gradient estimates [B, *shape] w.r.t. the family's logits."""
    make, params, f = FAMILIES[family]
    torch.manual_seed(seed)
    copies = params.expand(B, *params.shape).clone().requires_grad_()
    out = estimators.build(name, **options)(make(copies), f, 1)
    return torch.autograd.grad(out.sum() / out.shape[0], copies)[0].reshape(B, -1)


def z_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per coordinate, the difference of the two means in units of its standard error."""
    return (a.mean(0) - b.mean(0)) / ((a.var(0) + b.var(0)) / B).sqrt()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_at_one_conditional_draw_it_is_straight_through(family, temperature):
    """K = 1: (D, G_1) has the law of (argmax(theta + G), G), so the estimates have
    straight_through's law: equal means (z-test) and equal variances (within their intervals)."""
    ours = estimates("rao_blackwell_st", family, 0, temperature=temperature, rb_samples=1)
    theirs = estimates("straight_through", family, 1, temperature=temperature)
    assert (z_difference(ours, theirs).abs() < Z_CRIT).all()
    for a, b in zip(ours.T, theirs.T, strict=True):
        ma, mb = Moments.of(a), Moments.of(b)
        assert abs(ma.var - mb.var) / (ma.var_se**2 + mb.var_se**2) ** 0.5 < Z_CRIT


@pytest.mark.parametrize("family", FAMILIES)
def test_more_conditional_draws_keep_the_mean_and_lower_the_variance(family):
    """Rao-Blackwellization: straight_through's mean at every K, and a variance that falls from
    K = 1 to 10 to 100, each step by more than Z_CRIT standard errors of the difference. At
    tau = 0.1, where the noise of the Jacobian is large (at tau = 0.5 the step from 10 to 100
    is about 10% of the variance, some 4 standard errors: see docs/estimators.md)."""
    theirs = estimates("straight_through", family, 1, temperature=0.1)
    variances = []
    for seed, k in enumerate([1, 10, 100], start=2):
        ours = estimates("rao_blackwell_st", family, seed, temperature=0.1, rb_samples=k)
        assert (z_difference(ours, theirs).abs() < Z_CRIT).all(), k
        variances.append([Moments.of(c) for c in ours.T])
    for more, fewer in zip(variances[1:], variances[:-1], strict=False):
        for m, f in zip(more, fewer, strict=True):
            assert (f.var - m.var) / (m.var_se**2 + f.var_se**2) ** 0.5 > Z_CRIT


TOY_MOMENTS = {
    "bernoulli": lambda name, opts, cost, n: bernoulli_exact.exact_moments(
        name, opts, cost, 0.45, 0.3, 2, n
    ),
    "categorical": lambda name, opts, cost, n: categorical_exact.exact_moments(
        name, opts, cost, 1.0, [1.0, -0.5, 0.3], 4, n
    ),
}


@pytest.mark.parametrize(
    "toy, cost",
    [
        ("bernoulli", "square"),
        ("bernoulli", "power"),
        ("categorical", "sum_sq"),
        ("categorical", "abs_diff"),
    ],
)
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_its_exact_moments_on_the_toys_are_straight_throughs_at_one_draw(toy, cost, temperature):
    """The toys' exact answers: at K = 1 straight-through's to the bit, at every num_samples;
    for larger K the same mean and a variance that falls with K to a positive limit, that of
    the mean given the draw."""
    moments = TOY_MOMENTS[toy]
    for n in (1, 3):
        straight = moments("straight_through", {"temperature": temperature}, cost, n)
        ours = moments("rao_blackwell_st", {"temperature": temperature, "rb_samples": 1}, cost, n)
        assert None not in straight and ours == straight
    means, variances = zip(
        *(
            moments("rao_blackwell_st", {"temperature": temperature, "rb_samples": k}, cost, 1)
            for k in (1, 2, 10, 10**9)
        ),
        strict=True,
    )
    assert len(set(means)) == 1
    assert all(a > b for a, b in zip(variances, variances[1:], strict=False))
    assert variances[-1] > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0}, "temperature=0: must be a number > 0"),
        ({"temperature": -1.0}, "temperature=-1.0: must be a number > 0"),
        ({"temperature": float("inf")}, "temperature=inf: must be a finite number > 0"),
        ({"rb_samples": 0}, "rb_samples=0: must be a positive integer"),
        ({"rb_samples": 2.5}, "rb_samples=2.5: must be a positive integer"),
        ({"rb_samples": True}, "rb_samples=True: must be a positive integer"),
    ],
)
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        estimators.build("rao_blackwell_st", **options)
    assert "\n" not in str(error.value)


def test_the_forward_value_is_f_at_the_draw_and_one_evaluation_per_draw():
    torch.manual_seed(3)
    calls = []
    est = estimators.build("rao_blackwell_st", rb_samples=7)
    dist = Independent(OneHotCategorical(logits=THETA.expand(5, 2, 3)), 1)
    out = est(dist, lambda x: calls.append(x) or coupled(x), 4)
    (z,) = calls
    assert z.shape == (4, 5, 2, 3) and torch.equal(z, z.round()) and (z.sum(-1) == 1).all()
    assert torch.equal(out, coupled(z)) and est.evaluations(dist, 4) == 4

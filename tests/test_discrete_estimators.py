"""Discrete latents: the score-function estimators on every discrete family, what f sees, and
bad input (the contract itself: ``benchmarks.testing``, run by test_estimators)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal, OneHotCategorical

import estimators


def distributions(logits: torch.Tensor) -> dict:
    """The discrete families the score-function estimators must serve, batch shape [5]."""
    return {
        "Bernoulli": Bernoulli(logits=logits[:, 0]),
        "Independent(Bernoulli)": Independent(Bernoulli(logits=logits), 1),
        "Categorical": Categorical(logits=logits),
        "OneHotCategorical": OneHotCategorical(logits=logits),
        "Independent(OneHotCategorical)": Independent(OneHotCategorical(logits=logits[:, None]), 1),
    }


def cost(z: torch.Tensor, dist) -> torch.Tensor:
    """A value per sample that depends on which outcome was drawn, for every family's events."""
    flat = z.float().reshape(*z.shape[: 1 + len(dist.batch_shape)], -1)
    weights = torch.arange(1.0, flat.shape[-1] + 1)
    return ((flat + 1) * weights).sum(-1) ** 2


SCORE = [
    ("reinforce", {}),
    ("reinforce_baseline", {"baseline": "loo"}),
    ("reinforce_baseline", {"baseline": "ema"}),
]


@pytest.mark.parametrize("family", list(distributions(torch.zeros(5, 3))))
@pytest.mark.parametrize("name, opts", SCORE)
def test_score_function_estimators_serve_every_discrete_family(name, opts, family):
    torch.manual_seed(0)
    logits = torch.randn(5, 3, requires_grad=True)
    dist = distributions(logits)[family]
    seen = []
    out = estimators.build(name, **opts)(dist, lambda z: seen.append(z) or cost(z, dist), 4)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out.detach(), cost(seen[0], dist))
    (grad,) = torch.autograd.grad(out.mean(), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["straight_through", "arm", "disarm", "rebar", "relax"])
def test_f_sees_hard_bits_where_the_value_is_f_at_a_bernoulli_draw(name):
    # The contract on Bernoulli bits (values, shapes, gradients): test_estimators, every estimator.
    torch.manual_seed(1)
    dist = Independent(Bernoulli(logits=torch.randn(5, 3)), 1)
    seen = []
    estimators.build(name)(dist, lambda z: seen.append(z) or z.sum(-1), 4)
    bits = torch.cat(seen)[:4]  # rebar and relax: f also sees the relaxed samples after them
    assert set(bits.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["gumbel_softmax", "straight_through"])
def test_relaxations_serve_one_hot_categoricals(name):
    torch.manual_seed(2)
    logits = torch.randn(5, 4, requires_grad=True)
    seen = []
    out = estimators.build(name)(
        OneHotCategorical(logits=logits),
        lambda z: seen.append(z) or (z * torch.arange(4.0)).sum(-1),
        3,
    )
    assert out.shape == (3, 5) and seen[0].shape == (3, 5, 4)
    (grad,) = torch.autograd.grad(out.mean(), logits)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize(
    "name, dist, match",
    [
        (
            "arm",
            Normal(torch.zeros(2), 1.0),
            "estimator 'arm' does not apply to Normal; estimators that do: measure_valued, "
            "reinforce, reinforce_baseline, reparam",
        ),
        (
            "reparam",
            Independent(Bernoulli(logits=torch.zeros(2, 3)), 1),
            "estimator 'reparam' does not apply to Independent(Bernoulli); estimators that do: "
            "arm, arms, disarm, double_cv, gst, gumbel_softmax, indecater, measure_valued, "
            "rao_blackwell_st, rebar, reinforce, reinforce_baseline, reinmax, relax, rodeo, "
            "straight_through, sum_and_sample, unordered_set",
        ),
        ("disarm", Categorical(logits=torch.zeros(2, 3)), "does not apply to Categorical"),
    ],
)
def test_an_estimator_that_does_not_apply_names_both_and_lists_those_that_do(name, dist, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        estimators.build(name)(dist, lambda z: z.sum(-1), 2)


@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_antithetic_estimators_need_an_even_number_of_evaluations(name):
    dist = Bernoulli(logits=torch.zeros(3))
    with pytest.raises(ValueError, match=f"num_samples=3: estimator '{name}'.*even num_samples"):
        estimators.build(name)(dist, lambda z: z, 3)


@pytest.mark.parametrize("temperature", [0, -1.0, "hot"])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match=f"temperature={temperature!r}: must be a number > 0"):
        estimators.build("gumbel_softmax", temperature=temperature)

"""REBAR and RELAX: the contract, unbiasedness at any value of the control variate (Bernoulli and
categorical), training that lowers the variance, state for checkpoints, and bad options."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import Bernoulli, Categorical, Independent
from toy_tables import metrics

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.tasks.base import build
from benchmarks.tasks.toy import bernoulli, categorical
from benchmarks.tasks.toy.exact import categorical as categorical_exact
from benchmarks.tasks.toy.exact.bernoulli import exact_gradient, exact_moments
from tests.test_bernoulli_task import Z_CRIT

LEARNED = ["rebar", "relax"]


def toy(**overrides) -> bernoulli.BernoulliToy:
    """The Bernoulli toy as ``task=bernoulli`` builds it, with ``overrides``."""
    return build(OmegaConf.merge(OmegaConf.load(CONF_DIR / "task/bernoulli.yaml"), overrides))


def bits(logits: torch.Tensor) -> Independent:
    return Independent(Bernoulli(logits=logits), 1)


@pytest.mark.parametrize("name", LEARNED)
def test_f_is_called_once_and_its_own_parameters_get_the_pathwise_gradient_of_f_at_b(name):
    torch.manual_seed(0)
    logits = torch.randn(5, 3, requires_grad=True)
    w = torch.tensor([0.2, -0.4, 0.7], requires_grad=True)
    seen = []
    out = estimators.build(name)(
        bits(logits), lambda b: seen.append(b) or (b - w).pow(2).sum(-1), 4
    )
    (z,) = seen  # [b; sigmoid(z / tau); sigmoid(z~ / tau)], stacked
    assert z.shape == (12, 5, 3) and out.shape == (4, 5)
    b = z[:4].detach()
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert ((z[4:8] > 0.5) == (b > 0.5)).all() and ((z[8:] > 0.5) == (b > 0.5)).all()
    torch.testing.assert_close(out.detach(), (b - w.detach()).pow(2).sum(-1))
    grad_w, grad_logits = torch.autograd.grad(out.mean(), (w, logits))
    (pathwise,) = torch.autograd.grad((b - w).pow(2).sum(-1).mean(), w)
    torch.testing.assert_close(grad_w, pathwise)  # the control variate adds nothing to f's own
    assert torch.isfinite(grad_logits).all() and grad_logits.abs().sum() > 0


def randomized(name: str, dim: int, seed: int) -> estimators.Estimator:
    """An estimator whose control variate is far from trained: eta, temperature and (RELAX) the
    surrogate network set at random. Unbiasedness must not depend on them."""
    torch.manual_seed(seed)
    est = estimators.build(name, temperature=0.3, eta=1.7)
    est(bits(torch.zeros(1, dim, dtype=torch.float64)), lambda b: b.sum(-1), 1)  # build
    with torch.no_grad():
        for p in est.parameters()[2:]:
            p.normal_(0.0, 1.0)
    return est.eval()


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("theta, dim, k", [(0.0, 1, 0.499), (1.5, 1, 0.45), (-0.7, 3, 2.0)])
def test_unbiased_whatever_the_control_variate(name, theta, dim, k):
    est = randomized(name, dim, seed=1)
    f = bernoulli.total_cost("square", k)
    logits = torch.full((dim,), theta, dtype=torch.float64)
    (g,) = toy().gradient_estimates(est, f, [logits], 1, 200_000)
    z = (g.mean() - exact_gradient("square", k, theta)) / (g.var() / len(g)).sqrt()
    assert abs(z) < Z_CRIT


def test_a_conditional_sample_not_differentiated_in_theta_is_caught(monkeypatch):
    """The check above fails if z~ is drawn given b but treated as a constant (a plausible slip;
    an independent z~ would still be unbiased, only noisier)."""
    from estimators import rebar

    conditional = rebar.conditional_logit
    monkeypatch.setattr(rebar, "conditional_logit", lambda theta, b: conditional(theta.detach(), b))
    with pytest.raises(AssertionError):
        test_unbiased_whatever_the_control_variate("rebar", 1.5, 1, 0.45)


@pytest.mark.slow  # 200 training steps and 10^5 estimates at two k: 20 s for relax
@pytest.mark.parametrize("name", LEARNED)
def test_the_toy_trains_the_control_variate_then_measures_it_unbiased(name):
    table = metrics(
        "bernoulli", name, {"lr": 0.01}, k=[0.45, 0.499], cv_steps=200, n_estimates=100_000
    )
    assert table.exact_var.isna().all() and table.exact_mean.isna().all()
    assert (table.learned_temperature != 0.5).all() and (table.learned_eta != 1.0).all()
    assert (table.z_score.abs() < Z_CRIT).all(), table[["k", "grad_mean", "exact_grad"]]


def test_training_lowers_relax_variance_by_orders_of_magnitude_at_k_0499():
    untrained = metrics("bernoulli", "relax", {"lr": 0.01}, k=[0.499], cv_steps=0).iloc[0]
    trained = metrics("bernoulli", "relax", {"lr": 0.01}, k=[0.499], cv_steps=100).iloc[0]
    _, reinforce = exact_moments("reinforce", {}, "square", 0.499, 0.0)
    # Untrained, the relaxation's control variate adds noise to REINFORCE's; 100 steps of Adam
    # on the variance bring it to 2e-4 of REINFORCE's or below (3 seeds measured: 2e-5 to 2e-4).
    assert untrained.grad_var_lo > reinforce
    assert trained.grad_var_hi < 1e-3 * reinforce


@pytest.mark.parametrize("name", LEARNED)
def test_eval_mode_and_state_round_trip(name):
    f = bernoulli.total_cost("square", 0.45)
    theta = torch.zeros(2, dtype=torch.float64)
    est = estimators.build(name, lr=0.05)
    torch.manual_seed(0)
    toy(cv_steps=20, cv_batch=32).train_control_variate(est, f, [theta], 1)
    assert not est.training
    trained = [p.detach().clone() for p in est.parameters()]
    assert est.learned()["temperature"] != 0.5
    frozen_step = bits(theta.requires_grad_().expand(8, 2))
    est.backward(est(frozen_step, f, 1).sum(), frozen_step.base_dist.logits)  # eval: no update
    for p, q in zip(est.parameters(), trained, strict=True):
        torch.testing.assert_close(p.detach(), q)

    restored = estimators.build(name, lr=0.05)
    restored.load_state_dict(copy.deepcopy(est.state_dict()))  # before its first call: kept
    restored.eval()
    outs = []
    for e in (est, restored):
        torch.manual_seed(5)
        outs.append(toy().gradient_estimates(e, f, [theta], 1, 64)[0])
    torch.testing.assert_close(outs[0], outs[1])
    assert restored.state_dict()["optimizer"]["state"]  # Adam's moments came back too


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("rebar", {"temperature": 0}, "temperature=0: must be a number > 0"),
        ("rebar", {"lr": -1.0}, "lr=-1.0: must be a number > 0"),
        ("rebar", {"eta": float("nan")}, "eta=nan: must be a finite number"),
        ("relax", {"hidden": 0}, "hidden=0: must be a positive integer"),
    ],
)
def test_bad_options_are_named(name, options, match):
    with pytest.raises(ValueError, match=match):
        estimators.build(name, **options)


def test_a_categorical_index_is_refused():
    with pytest.raises(ValueError, match="'relax' does not apply to Categorical"):
        estimators.build("relax")(Categorical(logits=torch.zeros(3)), lambda z: z.sum(-1), 1)


# Categorical latents: z = logits + Gumbel, b its one-hot argmax, z~ drawn given b (top-down).


def categorical_toy(**overrides) -> categorical.CategoricalToy:
    """The categorical toy as ``task=categorical`` builds it, with ``overrides``."""
    return build(OmegaConf.merge(OmegaConf.load(CONF_DIR / "task/categorical.yaml"), overrides))


@pytest.mark.parametrize("name", LEARNED)
def test_categorical_f_is_called_once_at_the_draw_and_two_relaxations_of_it(name):
    torch.manual_seed(0)
    logits = torch.randn(5, 2, 4, requires_grad=True)  # batch 5, two variables of 4 classes
    w = torch.randn(4, requires_grad=True)
    seen = []
    dist = categorical.one_hot_categorical(logits)
    out = estimators.build(name)(dist, lambda x: seen.append(x) or (x @ w).pow(2).sum(-1), 3)
    (x,) = seen  # [b; softmax(z / tau); softmax(z~ / tau)], stacked
    assert x.shape == (9, 5, 2, 4) and out.shape == (3, 5)
    b = x[:3].detach()
    assert (b.sum(-1) == 1).all() and set(b.unique().tolist()) <= {0.0, 1.0}
    for relaxed in (x[3:6], x[6:]):  # both relaxations round to the draw
        assert (relaxed.argmax(-1) == b.argmax(-1)).all()
        torch.testing.assert_close(relaxed.sum(-1), torch.ones(3, 5, 2), check_dtype=False)
    torch.testing.assert_close(out.detach(), (b @ w.detach()).pow(2).sum(-1))
    grad_w, grad_logits = torch.autograd.grad(out.mean(), (w, logits))
    (pathwise,) = torch.autograd.grad((b @ w).pow(2).sum(-1).mean(), w)
    torch.testing.assert_close(grad_w, pathwise)
    assert torch.isfinite(grad_logits).all() and grad_logits.abs().sum() > 0


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize(
    "cost, k, logits, dim",
    [("abs_diff", 0.5, [0.0, 0.0, 0.0], 2), ("sum_sq", 1.2, [0.5, -1.0, 1.5], 1)],
)
def test_categorical_unbiased_whatever_the_control_variate(name, cost, k, logits, dim):
    torch.manual_seed(1)
    est = estimators.build(name, temperature=0.3, eta=1.7)
    theta = torch.tensor(logits, dtype=torch.float64).expand(dim, -1).clone()
    f = categorical.total_cost(cost, k)
    est(categorical.one_hot_categorical(theta.unsqueeze(0)), f, 1)  # build
    with torch.no_grad():
        for p in est.parameters()[2:]:
            p.normal_(0.0, 1.0)
    (g,) = categorical_toy().gradient_estimates(est.eval(), f, [theta], 1, 200_000)
    exact = categorical_exact.exact_gradient(cost, k, logits)
    assert abs(g.mean() - exact) / (g.var() / len(g)).sqrt() < Z_CRIT


def test_a_categorical_conditional_sample_not_differentiated_in_the_logits_is_caught(monkeypatch):
    from estimators import rebar

    conditional = rebar.conditional_perturbed
    monkeypatch.setattr(rebar, "conditional_perturbed", lambda t, b: conditional(t.detach(), b))
    with pytest.raises(AssertionError):
        test_categorical_unbiased_whatever_the_control_variate(
            "rebar", "sum_sq", 1.2, [0.5, -1.0, 1.5], 1
        )


@pytest.mark.slow  # 100 training steps, then 40,000 estimates
@pytest.mark.parametrize("name", LEARNED)
def test_the_categorical_toy_trains_the_control_variate_then_measures_it_unbiased(name):
    table = metrics("categorical", name, {"lr": 0.01}, cv_steps=100, k=[1.0])
    assert table.exact_var.isna().all() and table.exact_mean.isna().all()
    assert (table.learned_temperature != 0.5).all() and (table.learned_eta != 1.0).all()
    z = (table.grad_mean - table.exact_grad) / (table.grad_var / table.n_estimates) ** 0.5
    assert (z.abs() < Z_CRIT).all(), table[["k", "grad_mean", "exact_grad"]]

"""Estimators of multi-sample objectives (the ELBO and the IWAE bound): values, exactness at the
optimum, unbiasedness against an enumerated IWAE gradient, and bad input in one line."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Independent, Normal

import estimators
from estimators import vimco
from estimators.errors import ConfigError
from estimators.objectives import Objective

D, M = 3, 20_000
X = torch.tensor([0.5, -1.0, 2.0])
PRIOR_MEAN = torch.tensor([0.2, 0.1, -0.3])
OBJECTIVE_ESTIMATORS = [name for name, cls in sorted(estimators.REGISTRY.items()) if cls.objectives]


def gaussian_log_joint(mu: torch.Tensor):
    """log p(x, z) of Rainforth et al.'s model at the point X: p(z) = N(mu, I), p(x|z) = N(z, I)."""
    return lambda z: Normal(z, 1.0).log_prob(X).sum(-1) + Normal(mu, 1.0).log_prob(z).sum(-1)


def gaussian_gradients(name, objective, loc, scale, num_samples=None, **options):
    """M estimates of the objective's gradient w.r.t. q's loc and scale (rows), one per copy."""
    est = estimators.build(name, **options)
    copies = [p.detach().requires_grad_().expand(M, D) for p in (loc, scale)]
    q = Independent(Normal(*copies), 1)
    n = num_samples or est.min_samples
    out = est.surrogate(q, gaussian_log_joint(PRIOR_MEAN), objective, n)
    assert out.shape == (n, M)
    return out, torch.autograd.grad(out.mean(0).sum(), copies)


OPTIMUM = ((X + PRIOR_MEAN) / 2, torch.full((D,), math.sqrt(0.5)))  # the exact posterior
PERTURBED = (OPTIMUM[0] + torch.tensor([0.6, -0.4, 0.3]), torch.tensor([0.9, 0.5, 0.7]))


@pytest.mark.parametrize("name", OBJECTIVE_ESTIMATORS)
def test_at_the_exact_posterior_every_estimate_of_either_objective_is_log_p_x(name):
    torch.manual_seed(0)
    log_px = Normal(PRIOR_MEAN, math.sqrt(2.0)).log_prob(X).sum()
    for objective in (Objective("elbo", 4), Objective("iwae", 4)):
        if objective.name in estimators.REGISTRY[name].objectives:
            out, _ = gaussian_gradients(name, objective, *OPTIMUM)
            assert torch.allclose(out, log_px, atol=1e-5), (objective, out.min(), out.max())


@pytest.mark.parametrize("name, objective", [("stl", "elbo"), ("dreg", "iwae")])
def test_stl_and_dreg_land_at_the_exact_posterior_where_reparam_does_not(name, objective):
    """log w is constant in z there, so every STL (ELBO) and DReG (IWAE) estimate of q's
    gradient is exactly zero up to rounding; the pathwise estimates vary."""
    torch.manual_seed(1)
    objective = Objective(objective, 8)
    for grads in gaussian_gradients(name, objective, *OPTIMUM)[1]:
        assert grads.abs().max() < 1e-5
    for grads in gaussian_gradients("reparam", objective, *OPTIMUM)[1]:
        assert grads.std(0).min() > 0.01


def z_scores(a: torch.Tensor, b: torch.Tensor | None = None, exact: torch.Tensor | None = None):
    """Per coordinate: the difference of the means of estimate rows ``a`` and ``b`` (or of
    ``a``'s mean and ``exact``) over its standard error."""
    se2 = a.var(0) / len(a)
    if b is not None:
        return (a.mean(0) - b.mean(0)) / (se2 + b.var(0) / len(b)).sqrt()
    return (a.mean(0) - exact) / se2.sqrt()


def critical(count: int) -> float:
    """The two-sided z critical value for ``count`` comparisons at a family-wise 0.001."""
    return stats.norm.ppf(1 - 0.001 / (2 * count))


def test_dreg_and_reparam_agree_in_mean_on_iwae_and_stl_does_not():
    """Both are unbiased for the IWAE gradient; STL drops a term and is biased (Tucker et al.)."""
    objective = Objective("iwae", 5)
    rows = {}
    for seed, name in enumerate(("reparam", "dreg", "stl")):
        torch.manual_seed(10 + seed)
        rows[name] = torch.cat(gaussian_gradients(name, objective, *PERTURBED)[1], 1)
    agree = z_scores(rows["dreg"], rows["reparam"])
    assert agree.abs().max() < critical(2 * D), agree
    biased = z_scores(rows["stl"], rows["reparam"])
    assert biased.abs().max() > 2 * critical(2 * D), biased


# A 3-bit Bernoulli VAE at one data point: q(b) = Bernoulli(logits), p(b) = Bernoulli(prior
# logits), p(x|b) = Bernoulli(W b + c) over 4 pixels.
BITS, PIXELS = 3, 4
Q_LOGITS = torch.tensor([0.4, -0.8, 1.2])
PRIOR_LOGITS = torch.tensor([-0.3, 0.5, 0.0])
W = torch.tensor([[1.5, -2.0, 0.5], [-1.0, 0.8, 2.0], [0.3, 1.1, -1.7], [2.2, -0.4, 0.9]])
C = torch.tensor([-0.5, 0.2, 0.1, -0.3])
PIXELS_SEEN = torch.tensor([1.0, 0.0, 1.0, 1.0])


def bernoulli_log_joint(b: torch.Tensor) -> torch.Tensor:
    likelihood = Bernoulli(logits=b @ W.T + C).log_prob(PIXELS_SEEN).sum(-1)
    return likelihood + Bernoulli(logits=PRIOR_LOGITS).log_prob(b).sum(-1)


def exact_iwae_gradient(logits: torch.Tensor) -> torch.Tensor:
    """d/dlogits of E[log (w_1 + w_2) / 2] over q x q, enumerating all 8 x 8 pairs of states."""
    logits = logits.detach().requires_grad_()
    q = Independent(Bernoulli(logits=logits), 1)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=BITS)))
    log_q = q.log_prob(states)
    log_w = bernoulli_log_joint(states) - log_q
    pair_bound = torch.logsumexp(torch.stack(torch.broadcast_tensors(log_w[:, None], log_w)), 0)
    expected = (log_q[:, None] + log_q).exp().mul(pair_bound - math.log(2)).sum()
    (grad,) = torch.autograd.grad(expected, logits)
    return grad


def bernoulli_gradients(name: str, seed: int, **options) -> torch.Tensor:
    torch.manual_seed(seed)
    est = estimators.build(name, **options)
    copies = Q_LOGITS.detach().requires_grad_().expand(M, BITS)
    out = est.surrogate(
        Independent(Bernoulli(logits=copies), 1),
        bernoulli_log_joint,
        Objective("iwae", 2),
        est.min_samples,
    )
    (grads,) = torch.autograd.grad(out.mean(0).sum(), copies)
    return grads


@pytest.mark.parametrize(
    "name, options",
    [
        ("vimco", {"mean": "geometric"}),
        ("vimco", {"mean": "arithmetic"}),
        ("reinforce", {}),
        ("reinforce_baseline", {"baseline": "loo"}),
    ],
)
def test_score_function_iwae_gradients_are_unbiased_against_enumeration(name, options):
    z = z_scores(bernoulli_gradients(name, 20, **options), exact=exact_iwae_gradient(Q_LOGITS))
    assert z.abs().max() < critical(BITS), z


def test_a_vimco_baseline_that_includes_the_samples_own_weight_is_caught(monkeypatch):
    """With c_k = the bound itself, the learning signal L - c_k is 0 and only sum_k w~_k grad
    log w_k is left: biased, and the test above would fail."""

    def own_weight_included(log_w: torch.Tensor, mean: str) -> torch.Tensor:
        k = log_w.shape[1]
        return (torch.logsumexp(log_w, 1, keepdim=True) - math.log(k)).expand_as(log_w)

    monkeypatch.setattr(vimco, "leave_one_out_bounds", own_weight_included)
    z = z_scores(bernoulli_gradients("vimco", 20), exact=exact_iwae_gradient(Q_LOGITS))
    assert z.abs().max() > 2 * critical(BITS), z


def test_vimco_leave_one_out_bounds_match_a_loop():
    torch.manual_seed(3)
    log_w = torch.randn(2, 4, 3) * 3
    log_w[0, 1] += 60  # one weight dominates: the others' sum must not cancel away
    log_w[1, 3] = log_w[1, 2] = log_w[1].max(0).values + 1  # two equal largest weights
    for mean in ("geometric", "arithmetic"):
        got = vimco.leave_one_out_bounds(log_w, mean)
        for s, k, b in itertools.product(range(2), range(4), range(3)):
            others = torch.cat([log_w[s, :k, b], log_w[s, k + 1 :, b]])
            stand_in = others.mean() if mean == "geometric" else others.logsumexp(0) - math.log(3)
            expected = torch.logsumexp(torch.cat([others, stand_in[None]]), 0) - math.log(4)
            assert torch.isclose(got[s, k, b], expected, rtol=1e-5, atol=1e-5)


BITS_Q = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
NORMAL_Q = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)


@pytest.mark.parametrize(
    "name, q, objective, line",
    [
        (
            "dreg",
            BITS_Q,
            Objective("iwae", 2),
            "estimators of task.objective=iwae that do: reinforce, reinforce_baseline, rws, vimco",
        ),
        ("stl", BITS_Q, Objective("elbo", 2), "that do: reinforce, reinforce_baseline"),
        (
            "vimco",
            BITS_Q,
            Objective("iwae", 1),
            "task.num_samples=1: estimator 'vimco' needs K >= 2",
        ),
        (
            "measure_valued",
            NORMAL_Q,
            Objective("iwae", 4),
            "task.objective=iwae: estimator 'measure_valued' does not estimate it; estimators "
            "that do for Independent(Normal): dreg, reinforce",
        ),
        (
            "arm",
            BITS_Q,
            Objective("iwae", 4),
            "estimators that do for Independent(Bernoulli): reinforce, reinforce_baseline, rws, "
            "vimco",
        ),
        ("dreg", NORMAL_Q, Objective("elbo", 4), "task.objective=elbo: estimator 'dreg'"),
    ],
)
def test_an_objective_an_estimator_cannot_serve_is_refused_in_one_line(name, q, objective, line):
    with pytest.raises(ConfigError) as error:
        estimators.build(name).surrogate(q, lambda z: z.sum(-1), objective, 1)
    assert line in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["stl", "dreg", "vimco", "rws"])
def test_objective_only_estimators_refuse_a_plain_cost(name):
    with pytest.raises(ConfigError, match=f"estimator '{name}' estimates the gradients of multi"):
        estimators.build(name)(NORMAL_Q, lambda z: z.sum(-1), 4)


def test_an_unknown_objective_and_a_control_variate_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="task.objective='cubo' is unknown; objectives: elbo"):
        Objective("cubo", 2)
    with pytest.raises(ConfigError, match="control_variate=delta: the control variate serves"):
        estimators.build("reparam", control_variate="delta").surrogate(
            NORMAL_Q, lambda z: z.sum(-1), Objective("iwae", 2), 1
        )


@pytest.mark.parametrize(
    "name, options, line",
    [
        ("reinforce_baseline", {"baseline": "hook"}, "baseline=hook: multi-sample objectives"),
        ("reinforce_baseline", {"baseline": "optimal"}, "baseline=optimal: multi-sample"),
        ("reparam", {"control_variate": "delta"}, "control_variate=delta: the control variate"),
        ("reinforce", {"control_variate": "delta"}, "control_variate=delta: the control variate"),
    ],
)
def test_an_option_the_objective_path_refuses_is_caught_by_check_objective(name, options, line):
    # A task validates with check_objective before any work: it must refuse what the call would.
    with pytest.raises(ConfigError, match=line):
        estimators.build(name, **options).check_objective(NORMAL_Q, Objective("iwae", 2), 2)

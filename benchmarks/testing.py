"""The project's estimator checks, for the tests of an estimator package (and of this project):

    import pytest
    from benchmarks.testing import CHECKS

    @pytest.mark.parametrize("check", CHECKS)
    def test_estibench_checks(check):
        check("antithetic")  # the registered name, and any options: check("mine", scale=2.0)

Each check builds the estimator with ``estimators.build`` and raises AssertionError saying what
is wrong: ``check_contract`` (values, shapes, refusals, state), ``check_unbiased`` (the mean
against exact gradients, where the estimator claims to be unbiased) and ``check_run`` (a short
run as the command line makes it).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import torch
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical

import estimators
from benchmarks import measure
from benchmarks.experiment import compose_config, run_config
from estimators.base import Estimator
from estimators.errors import ConfigError

# Two-sided 1e-6 per comparison: the project's tests make about 140 of them (every estimator,
# toy, cost and coordinate), a family-wise false-alarm rate under 1e-3 whatever the seeds.
Z_CRIT = NormalDist().inv_cdf(1 - 0.5e-6)
DIM = 3  # event size of every distribution here
BATCH = 5  # batch size of the contract's distributions
B = 40_000  # independent gradient estimates per unbiasedness comparison

# The contract's families, each built from a [BATCH, DIM] parameter tensor.
FAMILIES: dict[str, Callable[[torch.Tensor], Distribution]] = {
    "Normal": lambda p: Independent(Normal(p, torch.ones_like(p)), 1),
    "Bernoulli": lambda p: Independent(Bernoulli(logits=p), 1),
    "OneHotCategorical": lambda p: OneHotCategorical(logits=p),
}


def check_contract(name: str, **options) -> None:
    """On each family it serves: values equal f(z), shape [num_samples, *batch_shape], f's own
    parameters get the pathwise gradient, and a copy that loads its ``state_dict`` (through
    ``torch.save``, as a checkpoint) gives the same gradient at the same seed. A family it does
    not serve, too few samples or more than its ``max_samples``, is refused with a ConfigError
    before f is called."""
    served = []
    for family, make in FAMILIES.items():
        est = estimators.build(name, **options)
        where = f"estimator '{name}' on {family}"
        torch.manual_seed(0)
        params = torch.randn(BATCH, DIM, requires_grad=True)
        n = max(4, est.min_samples)
        if not est.supports(make(params)):
            assert_refused(est, make(params), n, f"{where} (not supported)")
            continue
        served.append(family)
        if est.min_samples > 1:
            assert_refused(est, make(params), est.min_samples - 1, f"{where} with too few samples")
        most = est.max_samples(make(params))
        if most is not None:  # distinct draws: at most the support's size
            assert_refused(est, make(params), most + 1, f"{where} with too many samples")
            n = min(n, most)
        w = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)  # a parameter of f (a decoder)
        seen = []

        def f(z, w=w, seen=seen):
            seen.append(z)
            return (w * z).sum(-1)

        out = est(make(params), f, n)
        assert out.shape == (n, BATCH), (
            f"{where}: result of shape {list(out.shape)}; the contract asks for "
            f"[num_samples, *batch_shape] = {[n, BATCH]}"
        )
        # f may see more points than the draws, in any order (rebar's relaxed samples,
        # measure_valued's perturbed copies): each value must be f at one of them.
        points = torch.cat(seen).detach()  # [rows, BATCH, DIM]
        match = torch.isclose(out.detach(), (w.detach() * points).sum(-1).unsqueeze(1))
        assert match.any(0).all(), f"{where}: values are not f at points f was called on"
        z = points[match.int().argmax(0), torch.arange(BATCH)]  # [n, BATCH, DIM]: the draws
        grad_w, grad_p = torch.autograd.grad(out.mean(), (w, params), allow_unused=True)
        assert grad_w is not None and torch.allclose(grad_w, z.mean((0, 1))), (
            f"{where}: the gradient of f's own parameter is not the pathwise one"
        )
        assert grad_p is not None and torch.isfinite(grad_p).all(), (
            f"{where}: no finite gradient for the distribution's parameters"
        )
        copy = estimators.build(name, **options)
        copy(make(params), f, n)  # built as a checkpoint's estimator is, then loaded
        copy.load_state_dict(saved(est.state_dict()))
        grads = []
        for e in (est, copy):
            torch.manual_seed(1)
            grads.append(torch.autograd.grad(e(make(params), f, n).mean(), params)[0])
        assert torch.equal(*grads), f"{where}: a copy loaded from its state_dict differs"
    assert served, f"estimator '{name}' serves none of {', '.join(FAMILIES)}; nothing to check"


def saved(state: dict) -> dict:
    """``state`` through ``torch.save`` and ``torch.load``, as a checkpoint keeps it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def assert_refused(est: Estimator, dist: Distribution, n: int, where: str) -> None:
    """``est(dist, f, n)`` raises ConfigError without calling f."""
    seen = []
    try:
        est(dist, lambda z: seen.append(z) or z.sum(-1), n)
    except ConfigError:
        assert not seen, f"{where}: f was called before the ConfigError"
        return
    raise AssertionError(f"{where}: ran with num_samples={n} instead of raising ConfigError")


MU0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
LOG_SIGMA0 = torch.tensor([0.0, -0.5, 0.3], dtype=torch.float64)
THETA0 = torch.tensor([0.3, -0.8, 1.2], dtype=torch.float64)
A = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
C = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)


def bernoulli(theta: torch.Tensor) -> Distribution:
    return Independent(Bernoulli(logits=theta), 1)


def enumerated_gradient(f: Callable, theta: torch.Tensor = THETA0) -> torch.Tensor:
    """The exact gradient of E[f(b)] over Bernoulli(sigmoid(theta)) bits, summing all 2^DIM."""
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=DIM)), dtype=theta.dtype)
    theta = theta.clone().requires_grad_()
    expectation = (bernoulli(theta).log_prob(bits).exp() * f(bits)).sum()
    return torch.autograd.grad(expectation, theta)[0]


def _costs(fs: dict[str, Callable]) -> dict:
    return {cost: (f, (enumerated_gradient(f),)) for cost, f in fs.items()}


LOGITS0 = torch.tensor([[0.3, -0.8, 1.2], [0.0, 0.5, -0.4]], dtype=torch.float64)
"""Two categorical variables of DIM classes each."""


def categorical(logits: torch.Tensor) -> Distribution:
    return Independent(OneHotCategorical(logits=logits), 1)


def enumerated_categorical_gradient(f: Callable, logits: torch.Tensor = LOGITS0) -> torch.Tensor:
    """The exact gradient of E[f(x)] over the one-hot categoricals of ``logits``, summing all
    C^D joint outcomes."""
    variables, classes = logits.shape
    eye = torch.eye(classes, dtype=logits.dtype)
    x = torch.stack(
        [eye[list(index)] for index in itertools.product(range(classes), repeat=variables)]
    )  # [C^D, D, C]
    logits = logits.clone().requires_grad_()
    expectation = (categorical(logits).log_prob(x).exp() * f(x)).sum()
    return torch.autograd.grad(expectation, logits)[0]


W = torch.tensor([[1.5, -2.0, 0.7], [0.4, 1.0, -1.3]], dtype=torch.float64)


# The toys with exact gradients: starting parameters, the distribution they make, and each cost
# with the exact gradient of its expectation per parameter.
TOYS = {
    "Normal": (
        {"mu": MU0, "log_sigma": LOG_SIGMA0},
        lambda mu, log_sigma: Independent(Normal(mu, log_sigma.exp()), 1),
        {
            "constant": (lambda x: 0.0 * x.sum(-1) + 3.0, (0 * MU0, 0 * MU0)),
            "linear": (lambda x: (A * x).sum(-1), (A, 0 * MU0)),
            # E[sum a (x - c)^2] = sum a ((mu - c)^2 + sigma^2)
            "quadratic": (
                lambda x: (A * (x - C) ** 2).sum(-1),
                (2 * A * (MU0 - C), 2 * A * LOG_SIGMA0.exp() ** 2),
            ),
        },
    ),
    "Bernoulli": (
        {"theta": THETA0},
        bernoulli,
        _costs(
            {
                "constant": lambda b: 0.0 * b.sum(-1) + 3.0,
                "linear": lambda b: (A * b).sum(-1),
                "coupled": lambda b: ((A * b).sum(-1) - 0.5) ** 2,  # the bits interact
            }
        ),
    ),
    "Categorical": (
        {"logits": LOGITS0},
        categorical,
        {
            cost: (f, (enumerated_categorical_gradient(f),))
            for cost, f in {
                "constant": lambda x: 0.0 * x.sum((-2, -1)) + 3.0,
                "linear": lambda x: (W * x).sum((-2, -1)),
                "coupled": lambda x: ((W * x).sum((-2, -1)) - 0.5) ** 2,  # the variables interact
            }.items()
        },
    ),
}


def gradient_estimates(est: Estimator, toy: str, f: Callable, num_samples: int, batch: int = B):
    """``batch`` independent gradient estimates on ``toy`` (``measure.gradient_estimates``): a
    tuple of [batch, DIM] tensors, one per parameter."""
    start, make, _ = TOYS[toy]

    def model(copies):
        return make(*copies.values()), f

    return tuple(measure.gradient_estimates(est, model, start, num_samples, batch).values())


def assert_unbiased(grads: torch.Tensor, exact: torch.Tensor, where: str = "") -> None:
    """Each coordinate's mean lies within Z_CRIT standard errors of the exact gradient."""
    mean, var = grads.mean(0), grads.var(0)
    se = (var / grads.shape[0]).sqrt()
    # An exact estimator (zero variance) may still scatter by float rounding; hold it to the
    # exact value instead of dividing by a rounding-sized standard error.
    exact_zero_var = var.sqrt() <= 1e-9 * (mean.abs() + exact.abs() + 1)
    assert torch.allclose(mean[exact_zero_var], exact[exact_zero_var], atol=1e-12), (
        f"{where}: mean {mean.tolist()} of a zero-variance estimate, exact {exact.tolist()}"
    )
    z = ((mean - exact) / se)[~exact_zero_var]
    assert (z.abs() < Z_CRIT).all(), f"{where}: z-scores {z.tolist()} exceed {Z_CRIT:.2f}"


def check_unbiased(name: str, **options) -> None:
    """Where the estimator claims to be unbiased (``Estimator.unbiased``): on each toy it serves
    (a Normal with polynomial costs, Bernoulli bits, one-hot categoricals), the mean of 40,000
    estimates from ``min_samples`` (at least 2) draws each, at a fixed seed, lies within Z_CRIT
    standard errors of the exact gradient."""
    if not estimators.build(name, **options).unbiased:
        return
    served = [toy for toy in TOYS if supports(name, options, toy)]
    assert served, (
        f"estimator '{name}' claims to be unbiased but serves no toy with exact gradients "
        f"({', '.join(TOYS)}); set unbiased = False or test its mean yourself"
    )
    for toy in served:
        start, make, costs = TOYS[toy]
        for cost, (f, exact) in costs.items():
            torch.manual_seed(0)
            est = estimators.build(name, **options)
            n = max(2, est.min_samples)
            # a moving average starts
            est(make(*(p.expand(10, *p.shape) for p in start.values())), f, n)
            for param, g, e in zip(start, gradient_estimates(est, toy, f, n), exact, strict=True):
                assert_unbiased(
                    g, e, f"estimator '{name}' on the {toy} toy, {cost} cost, d/d{param}"
                )


def supports(name: str, options: dict, toy: str) -> bool:
    """Whether the estimator serves the distribution of ``toy``."""
    start, make, _ = TOYS[toy]
    return estimators.build(name, **options).supports(make(*start.values()))


def check_run(name: str, **options) -> None:
    """A short run as ``python -m benchmarks.run estimator=NAME [estimator.KEY=VALUE ...]`` makes
    it, on the Gaussian toy (else the Bernoulli toy, else the categorical one: the first it
    serves), on the CPU: it completes with a finite mean and variance in every row of its
    metrics."""
    runs = {  # the toy each family's run uses: task name, cost, k
        "Normal": ("gaussian", "square", "1.0"),
        "Bernoulli": ("bernoulli", "square", "0.45"),
        "Categorical": ("categorical", "abs_diff", "0.5"),
    }
    served = [family for family in runs if supports(name, options, family)]
    assert served, f"estimator '{name}' serves none of {', '.join(runs)}: no run to check"
    toy, cost, k = runs[served[0]]
    keys = [f"estimator.{key}={json.dumps(value)}" for key, value in options.items()]
    overrides = [f"task={toy}", f"estimator={name}", *keys, "device=cpu", f"task.costs=[{cost}]"]
    overrides += [f"task.k=[{k}]", "task.n_estimates=1000", "task.cv_steps=10"]
    _, result = run_config(compose_config(overrides))
    metrics = result.tables["metrics"]
    where = f"estimator '{name}' on task={toy}"
    assert result.status == "completed", f"{where}: status {result.status} {result.details}"
    assert set(metrics["estimator"]) == {name}, f"{where}: rows of {set(metrics['estimator'])}"
    finite = np.isfinite(metrics[["grad_mean", "grad_var"]].to_numpy(float)).all()
    assert finite, f"{where}: a mean or a variance is not finite\n{metrics}"


CHECKS = (check_contract, check_unbiased, check_run)
"""Every check, to parametrize a test over."""

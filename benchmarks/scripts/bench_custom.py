"""Speed of the custom task and the Python API, each against what it should cost, in one process.

``python -m benchmarks.scripts.bench_custom`` times, interleaved, with medians:

- ``benchmarks.api.compare`` measuring 10^7 single-sample ``reparam`` estimates of the Gaussian
  toy's square cost (mu = sigma = k = 1, one dimension, its exact gradient given) against a
  ``task=gaussian`` run of the same estimates (``run_task``: validation, the measurement loop,
  the exact answers, the table) and against that loop alone, with the same chunk size;
- ``task=custom``'s measurement of ``reparam`` on the logistic-regression example
  (``examples/logistic_regression.py``: 31 weights, 569 data points) against a hand-written
  vectorized torch computation of the same per-sample gradients, with and without their
  per-coordinate mean and variance.

Writes ``results/perf/custom_speed.csv`` with the machine it ran on and prints the table.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from omegaconf import OmegaConf
from torch.distributions import Independent, Normal

import estimators
from benchmarks import api
from benchmarks.config import CONF_DIR
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.base import Context, build, run_task
from benchmarks.tasks.custom import CustomTask
from benchmarks.tasks.custom.objective import Objective
from examples import logistic_regression

CPU = torch.device("cpu")
TOY_RUN = "task=gaussian run (validation, loop, exact answers, table)"


def gaussian_contenders(n: int, chunk: int) -> dict:
    """n single-sample reparam estimates of the square cost at mu = sigma = k = 1: the toy's
    measurement loop alone, a whole ``task=gaussian`` run of them (validation, the loop, the
    exact answers by quadrature, about 20 ms, and the table), and api.compare (given the exact
    gradient: its validation and table cost about 4 ms)."""
    cfg = OmegaConf.load(CONF_DIR / "task/gaussian.yaml")
    cfg = OmegaConf.merge(cfg, {"dim": 1, "n_estimates": n, "chunk_size": chunk})
    cfg.costs, cfg.k = ["square"], [1.0]
    toy = build(cfg)
    est, f, params = estimators.build("reparam"), toy.cost("square", 1.0), toy.initial(CPU)
    objective = (
        {"mu": torch.ones(1), "sigma": torch.ones(1)},
        lambda p: Independent(Normal(p["mu"], p["sigma"]), 1),
        lambda x: ((x - 1.0) ** 2).sum(-1),
        {"mu": torch.zeros(1), "sigma": torch.full((1,), 2.0)},
    )
    return {
        "task=gaussian measurement loop": lambda: toy.measure(est, f, params, 1, CPU),
        TOY_RUN: lambda: run_task(toy, lambda: estimators.build("reparam"), Context(0, CPU)),
        "api.compare": lambda: api.compare(
            ["reparam"], *objective[:3], n, exact=objective[3], chunk_size=chunk
        ),
    }


def regression_task(n: int) -> CustomTask:
    """``task=custom`` on the example, validated, with its defaults but ``n`` estimates."""
    options = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task/custom.yaml"))
    options.pop("_target_")
    task = CustomTask(Objective(*logistic_regression.make()), **{**options, "n_estimates": n})
    task.validate(estimators.build("reparam"), Context(0, CPU))
    return task


def hand_written(n: int, chunk: int, statistics: bool) -> Callable[[], None]:
    """Per-sample gradients of E[log joint] with respect to loc and log_scale: one graph and one
    backward pass over ``chunk`` broadcast copies of the parameters, chunk after chunk; with
    ``statistics``, each coordinate's mean and variance over the chunks as well."""
    params, _, log_joint = logistic_regression.make()

    def run() -> None:
        sums = None
        for lo in range(0, n, chunk):
            batch = min(chunk, n - lo)
            loc = params["loc"].detach().requires_grad_().expand(batch, -1)
            log_scale = params["log_scale"].detach().requires_grad_().expand(batch, -1)
            z = loc + log_scale.exp() * torch.randn_like(loc)
            g = torch.cat(torch.autograd.grad(log_joint(z).sum(), (loc, log_scale)), 1)
            if statistics:
                moments = torch.stack([g.sum(0), (g * g).sum(0)])
                sums = moments if sums is None else sums + moments
        if statistics:
            mean = sums[0] / n
            (sums[1] / n - mean**2).sum()

    return run


def main() -> None:
    cli = parser(__doc__, "custom_speed", repeats=15, n=10_000_000, threads=1)
    cli.add_argument("--n-regression", type=int, default=20_000, help="estimates of the example")
    args = parse(cli)

    torch.manual_seed(0)
    gaussian = gaussian_contenders(args.n, chunk=65536)
    task = regression_task(args.n_regression)
    chunk, reparam = task.cfg.chunk_size, estimators.build("reparam")
    regression = {
        "task=custom measurement": lambda: task.measure(
            reparam, 1, args.n_regression, CPU, lambda b: None
        ),
        "hand-written vectorized torch (gradients + mean, variance)": hand_written(
            args.n_regression, chunk, statistics=True
        ),
        "hand-written vectorized torch (gradients)": hand_written(
            args.n_regression, chunk, statistics=False
        ),
    }
    medians = interleaved_medians({**gaussian, **regression}, args.repeats, warmup=1)
    rows = []
    for objective, group, n, against in (
        ("gaussian toy, square, k=1", gaussian, args.n, "task=gaussian measurement loop"),
        (
            "logistic regression example",
            regression,
            args.n_regression,
            "hand-written vectorized torch (gradients)",
        ),
    ):
        for method in group:
            rows.append(
                {
                    "objective": objective,
                    "method": method,
                    "estimates": n,
                    "seconds": medians[method],
                    "ratio": medians[method] / medians[against],
                    "ratio_to": against,
                }
            )
    write_report(pd.DataFrame(rows), args.out)


if __name__ == "__main__":
    main()

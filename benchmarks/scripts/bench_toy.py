"""Speed of the toy measurement: the harness against hand-written torch, in one process.

``python -m benchmarks.scripts.bench_toy`` times, for 10^6 single-sample reparam estimates of the
square cost (mu = sigma = k = 1): the harness's whole measurement (batched gradient passes plus
streaming statistics, as ``task=gaussian`` runs it), its gradient passes alone, a hand-written
vectorized torch expression computing the same per-sample gradients, and one backward pass per
estimate (timed on a subset and scaled). Timings interleave the contenders and report medians, so
the ratios compare like with like on a shared machine. Writes a CSV and prints a table.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from omegaconf import OmegaConf

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.base import build
from benchmarks.tasks.toy.loops import Toy

MU = SIGMA = K = 1.0
CPU = torch.device("cpu")


def toy(n: int) -> Toy:
    """``task=gaussian`` at mu = sigma = 1 in one dimension, measuring ``n`` estimates."""
    cfg = OmegaConf.load(CONF_DIR / "task/gaussian.yaml")
    return build(OmegaConf.merge(cfg, {"mu": MU, "sigma": SIGMA, "dim": 1, "n_estimates": n}))


def harness_measurement(n: int) -> Callable[[], object]:
    """The harness's measurement: gradient passes and streaming moments, as the task runs them."""
    task, est = toy(n), estimators.build("reparam")
    f, params = task.cost("square", K), task.initial(CPU)
    return lambda: task.measure(est, f, params, 1, CPU)


def harness_gradients(n: int) -> Callable[[], object]:
    """The harness's batched gradient passes alone (what ``time_per_estimate_s`` times)."""
    task, est = toy(n), estimators.build("reparam")
    f, params, chunk = task.cost("square", K), task.initial(CPU), task.cfg.chunk_size

    def passes() -> None:
        for lo in range(0, n, chunk):
            task.gradient_estimates(est, f, params, 1, min(chunk, n - lo))

    return passes


def hand_written_autograd(n: int) -> None:
    """What a user would write without the harness: one vectorized graph, one backward pass."""
    mu = torch.full((n,), MU, requires_grad=True)
    sigma = torch.full((n,), SIGMA, requires_grad=True)
    x = mu + sigma * torch.randn(n)
    torch.autograd.grad(((x - K) ** 2).sum(), (mu, sigma))


def hand_written_formula(n: int) -> None:
    """The per-sample gradients of (x - k)^2, x = mu + sigma eps, written out in closed form."""
    eps = torch.randn(n)
    g_mu = 2.0 * (MU + SIGMA * eps - K)
    g_mu * eps  # d/dsigma


def one_backward_per_estimate(n: int) -> None:
    """The naive loop: a scalar graph and a backward pass for every estimate."""
    for _ in range(n):
        mu = torch.tensor(MU, requires_grad=True)
        sigma = torch.tensor(SIGMA, requires_grad=True)
        x = torch.distributions.Normal(mu, sigma).rsample()
        ((x - K) ** 2).backward()


def main() -> None:
    cli = parser(__doc__, "toy_speed", repeats=7, n=1_000_000)
    cli.add_argument("--loop-n", type=int, default=5_000, help="estimates for the naive loop")
    args = parse(cli)

    torch.manual_seed(0)
    contenders = {
        "harness measurement (gradients + statistics)": harness_measurement(args.n),
        "harness gradient passes": harness_gradients(args.n),
        "hand-written vectorized torch (autograd)": lambda: hand_written_autograd(args.n),
        "hand-written vectorized torch (closed form)": lambda: hand_written_formula(args.n),
    }
    medians = interleaved_medians(contenders, args.repeats, warmup=1)
    per_estimate = {name: t / args.n for name, t in medians.items()}
    loop = interleaved_medians({"loop": lambda: one_backward_per_estimate(args.loop_n)}, 1)
    per_estimate["one backward pass per estimate"] = loop["loop"] / args.loop_n
    hand = per_estimate["hand-written vectorized torch (autograd)"]
    harness = per_estimate["harness measurement (gradients + statistics)"]
    table = pd.DataFrame(
        {
            "method": list(per_estimate),
            "seconds_per_estimate": list(per_estimate.values()),
            "seconds_per_1e6_estimates": [t * 1e6 for t in per_estimate.values()],
            "ratio_to_hand_written_autograd": [t / hand for t in per_estimate.values()],
            "ratio_to_harness": [t / harness for t in per_estimate.values()],
        }
    )
    write_report(table, args.out)


if __name__ == "__main__":
    main()

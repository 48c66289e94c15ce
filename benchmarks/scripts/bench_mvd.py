"""Speed of the measure-valued estimator on the toy: the harness against hand-written torch.

``python -m benchmarks.scripts.bench_mvd`` times, in one process, interleaved, with medians, 10^6
coupled single-draw ``measure_valued`` estimates of the square cost (mu = sigma = k = 1, one
dimension) with respect to mu and sigma: the harness's whole measurement (``task=gaussian``'s
``Toy.measure``: batched estimator calls, backward passes and streaming statistics), its
gradient passes alone, and a hand-written vectorized torch MVD computing the same estimates in
closed form (Rayleigh and double-sided Maxwell draws, the coupled differences of c), without and
with their mean and variance. Writes ``results/perf/mvd_speed.csv`` and prints the table.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from omegaconf import OmegaConf

import estimators
from benchmarks.allocator import keep_freed_memory
from benchmarks.config import CONF_DIR
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.base import build

MU = SIGMA = K = 1.0
CPU = torch.device("cpu")
HAND = "hand-written vectorized torch MVD (estimates)"


def hand_written(n: int, chunk: int, statistics: bool) -> None:
    """The coupled MVD estimates of d/dmu and d/dsigma of E (x - k)^2, chunk by chunk: w ~
    Rayleigh, m ~ double-sided Maxwell, e = U m, each drawn here in its plainest vectorized form
    (the estimator's samplers, written afresh); with ``statistics``, their mean and variance."""
    c = lambda x: (x - K) ** 2  # noqa: E731
    sums = None
    for lo in range(0, n, chunk):
        batch = min(chunk, n - lo)
        w = torch.sqrt(-2.0 * torch.log1p(-torch.rand(batch)))
        r = torch.randn(3, batch)
        m = (r * r).sum(0).sqrt() * (torch.randint(0, 2, (batch,)) * 2 - 1)
        e = torch.rand(batch) * m
        g_mu = (c(MU + SIGMA * w) - c(MU - SIGMA * w)) / (SIGMA * math.sqrt(2 * math.pi))
        g_sigma = (c(MU + SIGMA * m) - c(MU + SIGMA * e)) / SIGMA
        if statistics:
            g = torch.stack([g_mu, g_sigma])
            moments = torch.stack([g.sum(1), (g * g).sum(1)])
            sums = moments if sums is None else sums + moments


def main() -> None:
    args = parse(parser(__doc__, "mvd_speed", repeats=11, n=1_000_000, threads=1))

    keep_freed_memory()  # as the runner does
    torch.manual_seed(0)
    cfg = OmegaConf.load(CONF_DIR / "task/gaussian.yaml")
    toy = build(OmegaConf.merge(cfg, {"mu": MU, "sigma": SIGMA, "dim": 1, "n_estimates": args.n}))
    est = estimators.build("measure_valued")
    f, params, chunk = toy.cost("square", K), toy.initial(CPU), toy.cfg.chunk_size

    def passes() -> None:
        for lo in range(0, args.n, chunk):
            toy.gradient_estimates(est, f, params, 1, min(chunk, args.n - lo))

    contenders = {
        "harness measurement (gradients + statistics)": lambda: toy.measure(est, f, params, 1, CPU),
        "harness gradient passes": passes,
        HAND: lambda: hand_written(args.n, chunk, statistics=False),
        "hand-written vectorized torch MVD (estimates + mean, variance)": lambda: hand_written(
            args.n, chunk, statistics=True
        ),
    }
    medians = interleaved_medians(contenders, args.repeats, warmup=1)
    table = pd.DataFrame(
        {
            "method": list(medians),
            "seconds_per_1e6_estimates": [t / args.n * 1e6 for t in medians.values()],
            "ratio_to_hand_written": [t / medians[HAND] for t in medians.values()],
        }
    )
    write_report(table, args.out)


if __name__ == "__main__":
    main()

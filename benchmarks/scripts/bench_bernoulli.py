"""Speed of the Bernoulli toy's measurement: the harness's DisARM against hand-written torch.

``python -m benchmarks.scripts.bench_bernoulli`` times 10^6 single-pair DisARM estimates (theta =
0.3, cost (b - 0.499)^2, float64): the harness's whole measurement (batched passes and streaming
statistics, as ``task=bernoulli`` runs it), its gradient passes alone, and a hand-written vectorized
torch DisARM computing the same estimates; interleaved, medians of repeats, in one process. Writes
``results/perf/bernoulli_speed.csv``.
"""

from __future__ import annotations

import pandas as pd
import torch
from omegaconf import OmegaConf

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.measure import measure_estimates
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.base import build
from benchmarks.tasks.toy import bernoulli

THETA, K = 0.3, 0.499
CPU = torch.device("cpu")


def harness(n: int, chunk: int, with_statistics: bool) -> None:
    task = build(OmegaConf.load(CONF_DIR / "task/bernoulli.yaml"))
    est, f = estimators.build("disarm"), bernoulli.total_cost("square", K)
    theta = torch.full((1,), THETA, dtype=torch.float64)
    chunk_of = lambda b: task.gradient_estimates(est, f, [theta], 2, b)  # noqa: E731
    if with_statistics:
        measure_estimates(chunk_of, ("theta",), n, chunk, CPU)
    else:
        for lo in range(0, n, chunk):
            chunk_of(min(chunk, n - lo))


def hand_written(n: int) -> torch.Tensor:
    """DisARM written out: a uniform per estimate, the antithetic pair, the weighted difference."""
    theta = torch.tensor(THETA, dtype=torch.float64)
    u = torch.rand(n, dtype=torch.float64)
    b1 = (u > torch.sigmoid(-theta)).double()
    b2 = (u < torch.sigmoid(theta)).double()
    diff = (b1 - K) ** 2 - (b2 - K) ** 2
    return 0.5 * diff * (1 - 2 * b2) * (b1 != b2) * torch.sigmoid(theta.abs())


def main() -> None:
    args = parse(parser(__doc__, "bernoulli_speed", repeats=11, n=1_000_000))
    chunk = OmegaConf.load(CONF_DIR / "task/bernoulli.yaml").chunk_size
    torch.manual_seed(0)
    medians = interleaved_medians(
        {
            "harness measurement (gradients + statistics)": lambda: harness(args.n, chunk, True),
            "harness gradient passes": lambda: harness(args.n, chunk, False),
            "hand-written vectorized torch DisARM": lambda: hand_written(args.n),
        },
        args.repeats,
    )
    hand = medians["hand-written vectorized torch DisARM"]
    table = pd.DataFrame(
        {
            "method": list(medians),
            "seconds_per_1e6_estimates": [t * 1e6 / args.n for t in medians.values()],
            "ratio_to_hand_written": [t / hand for t in medians.values()],
        }
    )
    write_report(table, args.out)


if __name__ == "__main__":
    main()

"""Speed of the toy measurement: the harness against hand-written torch, in one process.

``python -m benchmarks.bench_toy`` times, for 10^6 single-sample reparam estimates of the square
cost (mu = sigma = k = 1): the harness's whole measurement (batched gradient passes plus streaming
statistics, as ``task=gaussian`` runs it), its gradient passes alone, a hand-written vectorized
torch expression computing the same per-sample gradients, and one backward pass per estimate
(timed on a subset and scaled). Timings interleave the contenders and report medians, so the
ratios compare like with like on a shared machine. Writes a CSV and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.results import write_table
from benchmarks.tasks.base import build
from benchmarks.tasks.toy import Toy

MU = SIGMA = K = 1.0
CPU = torch.device("cpu")


def machine(device: torch.device | None = None) -> str:
    """The CPU model, core count and torch build, and the GPU where ``device`` is one."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"
    if device is not None and device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return text


def write_report(
    table: pd.DataFrame, out: Path, digits: int = 4, device: torch.device | None = None
) -> None:
    """A speed table with the machine it ran on: written to ``out`` and printed."""
    table["machine"] = machine(device)
    write_table(table, out)
    text = table.drop(columns="machine").to_string(
        index=False, float_format=lambda v: f"{v:.{digits}g}"
    )
    print(f"{text}\n\nmachine: {table.machine.iloc[0]}\nwrote {out}")


def toy(n: int) -> Toy:
    """``task=gaussian`` at mu = sigma = 1 in one dimension, measuring ``n`` estimates."""
    cfg = OmegaConf.load(CONF_DIR / "task/gaussian.yaml")
    return build(OmegaConf.merge(cfg, {"mu": MU, "sigma": SIGMA, "dim": 1, "n_estimates": n}))


def harness_measurement(n: int) -> float:
    """The harness's measurement: gradient passes and streaming moments, as the task runs them."""
    task, est = toy(n), estimators.build("reparam")
    start = time.perf_counter()
    task.measure(est, task.cost("square", K), task.initial(CPU), 1, CPU)
    return time.perf_counter() - start


def harness_gradients(n: int) -> float:
    """The harness's batched gradient passes alone (what ``time_per_estimate_s`` times)."""
    task, est = toy(n), estimators.build("reparam")
    f, params, chunk = task.cost("square", K), task.initial(CPU), task.cfg.chunk_size
    start = time.perf_counter()
    for lo in range(0, n, chunk):
        task.gradient_estimates(est, f, params, 1, min(chunk, n - lo))
    return time.perf_counter() - start


def hand_written_autograd(n: int) -> float:
    """What a user would write without the harness: one vectorized graph, one backward pass."""
    start = time.perf_counter()
    mu = torch.full((n,), MU, requires_grad=True)
    sigma = torch.full((n,), SIGMA, requires_grad=True)
    x = mu + sigma * torch.randn(n)
    torch.autograd.grad(((x - K) ** 2).sum(), (mu, sigma))
    return time.perf_counter() - start


def hand_written_formula(n: int) -> float:
    """The per-sample gradients of (x - k)^2, x = mu + sigma eps, written out in closed form."""
    start = time.perf_counter()
    eps = torch.randn(n)
    g_mu = 2.0 * (MU + SIGMA * eps - K)
    g_mu * eps  # d/dsigma
    return time.perf_counter() - start


def one_backward_per_estimate(n: int) -> float:
    """The naive loop: a scalar graph and a backward pass for every estimate."""
    start = time.perf_counter()
    for _ in range(n):
        mu = torch.tensor(MU, requires_grad=True)
        sigma = torch.tensor(SIGMA, requires_grad=True)
        x = torch.distributions.Normal(mu, sigma).rsample()
        ((x - K) ** 2).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="estimates per timing")
    parser.add_argument("--loop-n", type=int, default=5_000, help="estimates for the naive loop")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("results/perf/toy_speed.csv"))
    args = parser.parse_args()

    torch.manual_seed(0)
    contenders = {
        "harness measurement (gradients + statistics)": lambda: harness_measurement(args.n),
        "harness gradient passes": lambda: harness_gradients(args.n),
        "hand-written vectorized torch (autograd)": lambda: hand_written_autograd(args.n),
        "hand-written vectorized torch (closed form)": lambda: hand_written_formula(args.n),
    }
    for run in contenders.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            times[name].append(run() / args.n)
    loop = one_backward_per_estimate(args.loop_n) / args.loop_n

    per_estimate = {name: statistics.median(t) for name, t in times.items()}
    per_estimate["one backward pass per estimate"] = loop
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

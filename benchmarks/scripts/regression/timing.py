"""The timing gate: each benchmark's time relative to a plain torch kernel of the same size.

Shared CI machines differ in speed from run to run, so absolute times make a poor gate. Each case
here pairs a target (an estimator's toy estimate, a VAE step, the gradient probe) with a reference
kernel, plain torch arithmetic on tensors of the same sizes, and times them in turn in the same
process; the gate compares the ratio target / reference with a committed baseline.

    python -m benchmarks.scripts.regression.timing compare results/perf/benchmarks.json
    python -m benchmarks.scripts.regression.timing update results/perf/benchmarks.json  # new one
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.results import atomic_write
from benchmarks.scripts.perf import interleaved_medians
from benchmarks.scripts.regression import BASELINE, THRESHOLD, compare, ratios_from_json, report
from benchmarks.tasks.base import build
from benchmarks.tasks.toy import gaussian
from benchmarks.tasks.vae.models import VAE
from benchmarks.tasks.vae.probe import encoder_gradient_samples
from benchmarks.tasks.vae.train import train_step

ESTIMATORS = ("reparam", "reinforce", "reinforce_baseline")
TOY_BATCH, X_DIM, HIDDEN, LATENT, BATCH, M = 65536, 64, 400, 20, 128, 20
CPU = torch.device("cpu")


def toy_case(name: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """One chunk of toy estimates (square cost), and an elementwise chain of the same size."""
    task = build(OmegaConf.load(CONF_DIR / "task/gaussian.yaml"))
    est, f, params = estimators.build(name), gaussian.total_cost("square", 1.0), task.initial(CPU)
    n = est.min_samples

    def target():
        return task.gradient_estimates(est, f, params, n, TOY_BATCH)

    def reference():
        eps = torch.randn(n, TOY_BATCH)
        g = 2.0 * (1.0 + eps - 1.0)
        return g.sum(), (g * eps).sum()

    return target, reference


def mlp_reference(rows: int) -> Callable[[], object]:
    """Forward and backward of a plain MLP with the VAE's sizes over ``rows`` inputs."""
    torch.manual_seed(0)
    x = torch.rand(rows, X_DIM)
    w1 = torch.randn(HIDDEN, X_DIM, requires_grad=True)
    w2 = torch.randn(2 * LATENT, HIDDEN, requires_grad=True)
    w3 = torch.randn(HIDDEN, LATENT, requires_grad=True)
    w4 = torch.randn(X_DIM, HIDDEN, requires_grad=True)

    def reference():
        h = (x @ w1.T).relu() @ w2.T
        out = (h[:, :LATENT] @ w3.T).relu() @ w4.T
        return torch.autograd.grad(out.square().sum(), (w1, w2, w3, w4))

    return reference


def vae_step_case(name: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """One VAE training step at the digits size, and the plain MLP of the same size."""
    torch.manual_seed(0)
    model = VAE(X_DIM, HIDDEN, LATENT)
    est = estimators.build(name)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.3))

    def target():
        return train_step(model, est, optimizer, params, x, est.min_samples)

    return target, mlp_reference(BATCH)


def probe_case(name: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """The M-estimate gradient probe, and the plain MLP over M batches."""
    torch.manual_seed(0)
    model = VAE(X_DIM, HIDDEN, LATENT)
    est = estimators.build(name)
    x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.3))

    def target():
        return encoder_gradient_samples(model, est, x, est.min_samples, M)

    return target, mlp_reference(M * BATCH)


CASES = {"toy_estimate": toy_case, "vae_step": vae_step_case, "grad_probe": probe_case}


def interleaved_ratio(
    target: Callable[[], object], reference: Callable[[], object], rounds: int = 21
) -> tuple[float, float, float]:
    """Median target time over median reference time, timing the two in turn; and both medians."""
    medians = interleaved_medians({"target": target, "reference": reference}, rounds, warmup=2)
    t, r = medians["target"], medians["reference"]
    return t / r, t, r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["compare", "update"])
    parser.add_argument("json", type=Path, help="pytest-benchmark JSON of tests/speed")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help=f"allowed relative growth of a ratio (default {THRESHOLD})",
    )
    args = parser.parse_args(argv)
    new = ratios_from_json(args.json)
    if args.action == "update":
        text = json.dumps(dict(sorted(new.items())), indent=2) + "\n"
        atomic_write(args.baseline, lambda handle: handle.write(text.encode()))
        print(f"wrote {len(new)} ratios to {args.baseline}")
        return 0
    failures = compare(new, json.loads(args.baseline.read_text()), args.threshold)
    passed = f"{len(new)} benchmarks within x{1 + args.threshold:.2f} of baseline"
    return report("timing gate", failures, passed)


if __name__ == "__main__":
    sys.exit(main())

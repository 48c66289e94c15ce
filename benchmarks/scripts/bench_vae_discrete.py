"""Speed of a training step on the Bernoulli-latent VAE, per estimator, against the leave-one-out
baseline at the same number of decoder evaluations.

``python -m benchmarks.scripts.bench_vae_discrete`` times ``benchmarks.tasks.vae.train.train_step``
on the DisARM paper's nonlinear VAE (784-200-200-200 bits, LeakyReLU, Adam 1e-4, batch 50; random
binary images, since a step's time does not depend on the pixel values) for every registered
estimator that applies to Independent(Bernoulli) (so new ones join by being registered), in one
process, the contenders interleaved, medians over repeats. The reference is ``reinforce_baseline``
(leave-one-out) with num_samples=2; arm and disarm also take num_samples=2 (one antithetic pair, two
decoder evaluations), the others their minimum. ``evaluations`` counts decoder rows per example per
step. ``--device cuda`` times it on a GPU. Writes ``results/perf/vae_discrete_speed.csv``
(``vae_discrete_speed_cuda.csv`` on a GPU) and prints it.
"""

from __future__ import annotations

import pandas as pd
import torch

import estimators
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.vae.models import VAE, estimators_for
from benchmarks.tasks.vae.train import train_step

X_DIM, HIDDEN, BITS, BATCH, LR = 784, 200, 200, 50, 1e-4
REFERENCE = "reinforce_baseline"


def contenders() -> dict[str, tuple[estimators.Estimator, int]]:
    """Every registered estimator that serves the Bernoulli latent, with its num_samples."""
    found = {}
    for name in estimators_for("bernoulli", BITS):
        est = estimators.build(name)
        found[name] = (est, 2 if name in (REFERENCE, "arm", "disarm") else est.min_samples)
    return found


def step_runner(est: estimators.Estimator, num_samples: int, x: torch.Tensor):
    """A fresh model (same initial weights for every estimator) and its training step."""
    torch.manual_seed(0)
    model = VAE(X_DIM, HIDDEN, BITS, "bernoulli", "nonlinear").to(x.device)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=LR)
    return model, lambda: train_step(model, est, optimizer, params, x, num_samples)


def decoder_evaluations(model: VAE, step) -> float:
    """Decoder input rows per example in one step (f's evaluations, relaxed ones included)."""
    rows = []
    hook = model.decoder.register_forward_hook(lambda m, args, out: rows.append(out.shape[:-1]))
    step()
    hook.remove()
    return sum(torch.Size(r).numel() for r in rows) / BATCH


def main() -> None:
    args = parse(
        parser(__doc__, "vae_discrete_speed", repeats=21, steps=10, device=True, threads=0)
    )
    device = args.device
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.3, device=device))
    runs, rows = {}, []
    for name, (est, num_samples) in contenders().items():
        model, step = step_runner(est, num_samples, x)
        runs[name] = step
        rows.append(
            {
                "estimator": name,
                "options": ",".join(f"{k}={v}" for k, v in est.options().items()),
                "num_samples": num_samples,
                "evaluations": decoder_evaluations(model, step),
            }
        )
    medians = interleaved_medians(runs, args.repeats, args.steps, device)
    table = pd.DataFrame(rows)
    table["ms_per_step"] = [1e3 * medians[name] for name in table.estimator]
    table["ratio_to_loo"] = table.ms_per_step / (1e3 * medians[REFERENCE])
    print(
        f"Bernoulli VAE {X_DIM}-{HIDDEN}-{HIDDEN}-{BITS} bits (nonlinear), batch {BATCH}, "
        f"median of {args.repeats} x {args.steps} steps, interleaved:"
    )
    write_report(table, args.out, digits=3, device=device)


if __name__ == "__main__":
    main()

"""Speed of a VAE training step on the IWAE bound, per estimator, against its reference at the
same K.

``python -m benchmarks.scripts.bench_vae_objectives`` times
``benchmarks.tasks.vae.train.train_step`` on the objective path (``task.objective=iwae``) in one
process, every contender interleaved with every other, medians over repeats, on random binary images
(a step's time does not depend on the pixel values), at K in 5 and 50:

- the Gaussian VAE (784-400-20, batch 128, Adam 1e-3): ``stl`` and ``dreg`` against ``reparam``;
- the Bernoulli VAE (the DisARM paper's 784-200-200-200 bits, nonlinear, batch 50, Adam 1e-4):
  ``vimco`` against ``reinforce_baseline`` (leave-one-out), which needs S = 2 estimates of K draws
  each where VIMCO takes one (``evaluations`` = S K decoder rows per example and step;
  ``ratio_per_evaluation`` compares the time per decoder evaluation).

``limit`` is the issue's: at most 1.1 times the reference. ``--device cuda`` times it on a GPU.
Writes ``results/perf/vae_objective_speed.csv`` (``_cuda`` on a GPU) and prints it.
"""

from __future__ import annotations

import pandas as pd
import torch

import estimators
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.vae.models import VAE
from benchmarks.tasks.vae.train import train_step
from estimators.objectives import Objective

KS = (5, 50)
LIMIT = 1.1
# latent: (model arguments, batch, learning rate, reference, contenders)
SETUPS = {
    "gaussian": ((784, 400, 20), 128, 1e-3, "reparam", ("stl", "dreg")),
    "bernoulli": (
        (784, 200, 200, "bernoulli", "nonlinear"),
        50,
        1e-4,
        "reinforce_baseline",
        ("vimco",),
    ),
}


def step_runner(latent: str, name: str, k: int, device: torch.device):
    """A fresh model (the same initial weights for every estimator of a latent family), a batch,
    and one IWAE-K training step with the estimator; its S."""
    model_args, batch, lr, _, _ = SETUPS[latent]
    torch.manual_seed(0)
    model = VAE(*model_args).to(device)
    x = torch.bernoulli(torch.full((batch, 784), 0.3, device=device))
    est = estimators.build(name)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    s, objective = est.min_samples, Objective("iwae", k)
    return s, lambda: train_step(model, est, optimizer, params, x, s, objective=objective)


def main() -> None:
    cli = parser(__doc__, "vae_objective_speed", repeats=21, steps=5, device=True, threads=1)
    cli.add_argument("--ks", type=int, nargs="+", default=list(KS), help="values of K")
    args = parse(cli)
    device = args.device
    runs, rows = {}, []
    for latent, (_, _, _, reference, names) in SETUPS.items():
        for k in args.ks:
            for name in (reference, *names):
                s, runs[latent, name, k] = step_runner(latent, name, k, device)
                row = {"latent": latent, "K": k, "estimator": name, "reference": reference}
                rows.append({**row, "num_samples": s, "evaluations": s * k})
    medians = interleaved_medians(runs, args.repeats, args.steps, device)
    table = pd.DataFrame(rows)
    table["ms_per_step"] = [1e3 * medians[key] for key in runs]
    reference = table.set_index(["latent", "estimator", "K"]).loc[
        list(zip(table.latent, table.reference, table.K, strict=True))
    ]
    table["ratio"] = table.ms_per_step / reference.ms_per_step.to_numpy()
    # per decoder evaluation: the leave-one-out reference draws S = 2 sets of K
    per_evaluation = reference.ms_per_step.to_numpy() / reference.evaluations.to_numpy()
    table["ratio_per_evaluation"] = table.ms_per_step / table.evaluations / per_evaluation
    table["limit"] = LIMIT
    table["within"] = table.ratio <= LIMIT
    print(
        "IWAE training step: Gaussian VAE 784-400-20 batch 128; Bernoulli VAE 784-200-200-200 "
        f"bits batch 50; median of {args.repeats} x {args.steps} steps, interleaved:"
    )
    write_report(table, args.out, digits=3, device=device)


if __name__ == "__main__":
    main()

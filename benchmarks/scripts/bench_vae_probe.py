"""What the decoder's rows cost the VAE's gradient probe.

``python -m benchmarks.scripts.bench_vae_probe`` times the probe (``probe.gradient_samples``, M =
100 estimates of the encoder's and the decoder's gradients on one batch) against the encoder-only
probe (``probe.encoder_gradient_samples``, the same pass without the decoder's per-copy gradients)
in one process, interleaved, medians over repeats, on random binary images of the digits' size (64
pixels), with the reference runs' models (``results/reference/vae_iwae`` and
``vae_bernoulli_iwae``):

- the Gaussian VAE (64-400-20, batch 128): ``reparam`` and ``reinforce_baseline`` on the ELBO,
  ``dreg`` on the IWAE bound at K = 5 and 50;
- the Bernoulli VAE (64-200-200-32 bits, nonlinear, batch 50): ``vimco`` and ``rws`` on the IWAE
  bound at K = 5 and 50.

Writes ``results/perf/vae_probe_speed.csv`` and prints it.
"""

from __future__ import annotations

import pandas as pd
import torch

import estimators
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.vae.models import VAE
from benchmarks.tasks.vae.probe import encoder_gradient_samples, gradient_samples
from estimators.objectives import Objective

# latent: (model arguments, batch, [(estimator, objective or None for the ELBO, K)])
SETUPS = {
    "gaussian": (
        (64, 400, 20),
        128,
        [("reparam", None, 1), ("reinforce_baseline", None, 1), ("dreg", "iwae", 5)]
        + [("dreg", "iwae", 50)],
    ),
    "bernoulli": (
        (64, 200, 32, "bernoulli", "nonlinear"),
        50,
        [("vimco", "iwae", 5), ("vimco", "iwae", 50), ("rws", "iwae", 5), ("rws", "iwae", 50)],
    ),
}


def probes(latent: str, name: str, objective: str | None, k: int, m: int):
    """The full and the encoder-only probe of one case, on a fresh model and batch."""
    model_args, batch, _ = SETUPS[latent]
    torch.manual_seed(0)
    model = VAE(*model_args)
    x = torch.bernoulli(torch.full((batch, model_args[0]), 0.3))
    est = estimators.build(name)
    goal = Objective(objective, k) if objective else None
    s = est.min_samples
    return (
        lambda: gradient_samples(model, est, x, s, m, goal),
        lambda: encoder_gradient_samples(model, est, x, s, m, goal),
    )


def main() -> None:
    cli = parser(__doc__, "vae_probe_speed", repeats=5, threads=1)
    cli.add_argument("--m", type=int, default=100, help="estimates per probe")
    args = parse(cli)
    rows = []
    for latent, (_, _, cases) in SETUPS.items():
        for name, objective, k in cases:
            full, encoder_only = probes(latent, name, objective, k, args.m)
            medians = interleaved_medians(
                {"full": full, "encoder": encoder_only}, args.repeats, warmup=1
            )
            rows.append(
                {
                    "latent": latent,
                    "estimator": name,
                    "objective": objective or "elbo",
                    "K": k,
                    "M": args.m,
                    "encoder_only_s": medians["encoder"],
                    "with_decoder_s": medians["full"],
                    "ratio": medians["full"] / medians["encoder"],
                }
            )
    print(f"the VAE's gradient probe, M = {args.m}, median of {args.repeats}, interleaved:")
    write_report(pd.DataFrame(rows), args.out, digits=3)


if __name__ == "__main__":
    main()

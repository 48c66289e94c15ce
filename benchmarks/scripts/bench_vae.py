"""Speed of the VAE task: the harness's training step and gradient probe against plain PyTorch.

``python -m benchmarks.scripts.bench_vae`` measures, in one process with the contenders interleaved
(medians over repeats), at 784-400-20 and batch 128 on random binary images (the time of a step
does not depend on the pixel values):

- one training step of the harness with ``reparam`` (``benchmarks.tasks.vae.train.train_step``)
  against a plain hand-written step of the canonical PyTorch example's VAE (fc1, fc21/fc22, fc3,
  fc4; binary cross-entropy on sigmoid outputs plus the closed-form KL; Adam 1e-3);
- the M=100 gradient-variance probe against M separate backward passes on the same batch, at
  784-400-20 and at the digits task's 64-400-20.

``--compile`` also times the harness's step through ``torch.compile`` as ``task.compile=true`` runs
it, and its first call, which compiles (tens of seconds on a CPU; less where torch's on-disk cache
of compiled graphs, ``TORCHINDUCTOR_CACHE_DIR``, already holds them).

``--tiny`` times the training step alone on a tiny VAE (64-16-2, batch 8), whose step on a CPU is
bound by per-op overhead as the default model's is on a GPU: there the ratio shows the Python and
the ops the harness adds to a step (its distribution, its estimator call, the gradient norm and the
finiteness test), which the default model's arithmetic hides on a CPU. Writes
``vae_speed_tiny.csv`` (``..._tiny_cuda.csv`` on a GPU; ``vae_speed_compile_tiny...`` with both).

``--device cuda`` times the same on a GPU (synchronizing before each clock reading). Writes
``results/perf/vae_speed.csv`` (``vae_speed_cuda.csv`` on a GPU; ``vae_speed_compile.csv`` and
``vae_speed_compile_cuda.csv`` with ``--compile``) and prints it.
"""

from __future__ import annotations

import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import estimators
from benchmarks.measure import synchronize, unvalidated
from benchmarks.scripts.perf import interleaved_medians, parse, parser, speed_csv, write_report
from benchmarks.tasks.vae.models import VAE, elbo_terms
from benchmarks.tasks.vae.probe import encoder_gradient_samples
from benchmarks.tasks.vae.train import compiled, train_step

X_DIM, HIDDEN, LATENT, BATCH = 784, 400, 20, 128
TINY = 64, 16, 2, 8  # x, hidden, latent, batch
CPU = torch.device("cpu")


class CanonicalVAE(nn.Module):
    """The model of pytorch/examples vae/main.py, written out plainly."""

    def __init__(self, x_dim: int = X_DIM, hidden: int = HIDDEN, latent: int = LATENT) -> None:
        super().__init__()
        self.fc1 = nn.Linear(x_dim, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, x_dim)

    def forward(self, x: torch.Tensor):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def canonical_step(model: CanonicalVAE, optimizer, x: torch.Tensor) -> None:
    recon, mu, logvar = model(x)
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    optimizer.zero_grad()
    (bce + kld).backward()
    optimizer.step()


def separate_backward_passes(model: VAE, estimator, x: torch.Tensor, m: int) -> None:
    """The probe done naively: M encoder-gradient estimates from M backward passes."""
    params = list(model.encoder.parameters())
    for _ in range(m):
        reconstruction, kl = elbo_terms(model, estimator, x, model.encoder(x), 1)
        torch.autograd.grad((reconstruction.mean(0) - kl).sum(), params)


def main() -> None:
    cli = parser(__doc__, "vae_speed", repeats=15, steps=20, device=True)
    cli.add_argument("--m", type=int, default=100, help="estimates per probe")
    cli.add_argument(
        "--compile", action="store_true", help="also time the step through torch.compile"
    )
    cli.add_argument("--tiny", action="store_true", help="the step alone, of a 64-16-2 VAE")
    args = parse(cli)
    device = args.device
    if args.out == speed_csv("vae_speed", device):  # the plain table stays as it was
        stem = "vae_speed" + "_compile" * args.compile + "_tiny" * args.tiny
        args.out = speed_csv(stem, device)
    x_dim, hidden, latent, batch = TINY if args.tiny else (X_DIM, HIDDEN, LATENT, BATCH)
    size = f"{x_dim}-{hidden}-{latent}" + (f", batch {batch}" if args.tiny else "")
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((batch, x_dim), 0.3, device=device))

    harness = VAE(x_dim, hidden, latent).to(device)
    harness_opt = torch.optim.Adam(harness.parameters(), lr=1e-3)
    harness_params = list(harness.parameters())
    reparam = estimators.build("reparam")
    canonical = CanonicalVAE(x_dim, hidden, latent).to(device)
    canonical_opt = torch.optim.Adam(canonical.parameters(), lr=1e-3)
    contenders = {
        "harness training step (reparam)": lambda: train_step(
            harness, reparam, harness_opt, harness_params, x, 1
        ),
        "canonical PyTorch VAE step": lambda: canonical_step(canonical, canonical_opt, x),
    }
    first_call = None
    if args.compile:
        model = VAE(x_dim, hidden, latent).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        params, step = list(model.parameters()), compiled(train_step)
        start = time.perf_counter()
        step(model, reparam, optimizer, params, x, 1)
        synchronize(device)
        first_call = time.perf_counter() - start
        contenders["harness training step (reparam), compiled"] = lambda: step(
            model, reparam, optimizer, params, x, 1
        )
    with unvalidated():  # as the trainer runs its steps
        steps = interleaved_medians(contenders, args.repeats, args.steps, device)

    groups = {f"training step, {size}": steps}
    for probe_dim in () if args.tiny else (X_DIM, 64):  # MNIST's size, and digits' (8x8)
        model = VAE(probe_dim, HIDDEN, LATENT).to(device)
        xs = torch.bernoulli(torch.full((BATCH, probe_dim), 0.3, device=device))
        groups[f"gradient probe, {probe_dim}-{HIDDEN}-{LATENT}"] = interleaved_medians(
            {
                f"M={args.m} estimates, one vectorized pass": lambda model=model, xs=xs: (
                    encoder_gradient_samples(model, reparam, xs, 1, args.m)
                ),
                f"M={args.m} separate backward passes": lambda model=model, xs=xs: (
                    separate_backward_passes(model, reparam, xs, args.m)
                ),
            },
            max(3, args.repeats // 3),
            1,
            device,
        )
    rows = []
    for group, medians in groups.items():
        reference = list(medians.values())[1]
        for name, seconds in medians.items():
            rows.append(
                {
                    "group": group,
                    "method": name,
                    "seconds": seconds,
                    "ratio": seconds / reference,
                }
            )
    if first_call is not None:  # in plain steps' time
        reference = steps["canonical PyTorch VAE step"]
        rows.append(
            {
                "group": f"compiling the step, {size}",
                "method": "first call of the compiled step (reparam)",
                "seconds": first_call,
                "ratio": first_call / reference,
            }
        )
    write_report(pd.DataFrame(rows), args.out, device=device)


if __name__ == "__main__":
    main()

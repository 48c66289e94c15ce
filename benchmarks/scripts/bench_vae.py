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
from benchmarks.measure import synchronize
from benchmarks.scripts.perf import interleaved_medians, parse, parser, speed_csv, write_report
from benchmarks.tasks.vae.models import VAE, elbo_terms
from benchmarks.tasks.vae.probe import encoder_gradient_samples
from benchmarks.tasks.vae.train import compiled, train_step

X_DIM, HIDDEN, LATENT, BATCH = 784, 400, 20, 128
CPU = torch.device("cpu")


class CanonicalVAE(nn.Module):
    """The model of pytorch/examples vae/main.py, written out plainly."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(X_DIM, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, LATENT)
        self.fc22 = nn.Linear(HIDDEN, LATENT)
        self.fc3 = nn.Linear(LATENT, HIDDEN)
        self.fc4 = nn.Linear(HIDDEN, X_DIM)

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
    args = parse(cli)
    device = args.device
    if args.compile and args.out == speed_csv("vae_speed", device):
        args.out = speed_csv("vae_speed_compile", device)  # the plain table stays as it was
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.3, device=device))

    harness = VAE(X_DIM, HIDDEN, LATENT).to(device)
    harness_opt = torch.optim.Adam(harness.parameters(), lr=1e-3)
    harness_params = list(harness.parameters())
    reparam = estimators.build("reparam")
    canonical = CanonicalVAE().to(device)
    canonical_opt = torch.optim.Adam(canonical.parameters(), lr=1e-3)
    contenders = {
        "harness training step (reparam)": lambda: train_step(
            harness, reparam, harness_opt, harness_params, x, 1
        ),
        "canonical PyTorch VAE step": lambda: canonical_step(canonical, canonical_opt, x),
    }
    first_call = None
    if args.compile:
        model = VAE(X_DIM, HIDDEN, LATENT).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        params, step = list(model.parameters()), compiled(train_step)
        start = time.perf_counter()
        step(model, reparam, optimizer, params, x, 1)
        synchronize(device)
        first_call = time.perf_counter() - start
        contenders["harness training step (reparam), compiled"] = lambda: step(
            model, reparam, optimizer, params, x, 1
        )
    steps = interleaved_medians(contenders, args.repeats, args.steps, device)

    groups = {"training step, 784-400-20": steps}
    for x_dim in (X_DIM, 64):  # MNIST's size, and digits' (8x8)
        model = VAE(x_dim, HIDDEN, LATENT).to(device)
        xs = torch.bernoulli(torch.full((BATCH, x_dim), 0.3, device=device))
        groups[f"gradient probe, {x_dim}-{HIDDEN}-{LATENT}"] = interleaved_medians(
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
                "group": "compiling the step, 784-400-20",
                "method": "first call of the compiled step (reparam)",
                "seconds": first_call,
                "ratio": first_call / reference,
            }
        )
    write_report(pd.DataFrame(rows), args.out, device=device)


if __name__ == "__main__":
    main()

"""Quality each estimator reaches on the digits VAE, after equal steps and after equal wall-clock.

``python -m benchmarks.scripts.vae_quality`` trains the default VAE (``task=vae``,
``dataset=digits``) with each estimator for ``--epochs`` epochs, then again under a training-time
budget equal to the time ``reparam`` took, over ``--seeds`` seeds, and reports the final ELBO over
the whole training set, the test ELBO and the test IWAE log-likelihood (k=1000). It also times one
whole default run (10 epochs of reparam, probes and IWAE included). Writes
``results/vae_digits/quality.csv`` and ``quality.md``.

``--latent bernoulli`` (or ``categorical``) does the same for the discrete-latent VAE with every
registered estimator that applies to it, and nvil; the time budget is then that of the
leave-one-out baseline, and the results go to ``results/vae_digits_<latent>/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from benchmarks.experiment import compose_config, run_overrides
from benchmarks.results import atomic_write, markdown_table, write_table
from benchmarks.scripts.perf import machine, parse, parser
from benchmarks.tasks.vae.models import ARCHS, LATENTS
from benchmarks.tasks.vae.settings import compared, resolve

COLUMNS = ["num_samples", "step", "time_s", "train_set_elbo", "test_elbo", "test_iwae"]


def train(overrides: list[str]) -> tuple[pd.Series, float]:
    """Train once on digits; the final eval row and the whole run's wall-clock seconds."""
    start = time.perf_counter()
    result = run_overrides(["task=vae", *overrides])
    return result.tables["eval"].iloc[-1], time.perf_counter() - start


def describe(latent: str) -> str:
    """The model's sizes as resolved for digits, for the table's caption."""
    s = resolve(compose_config(["task=vae", f"task.latent={latent}"]).task, "digits")
    if latent == "gaussian":
        sizes = f"64-{s['hidden']}-{s['latent_dim']}"
    else:
        layers = ARCHS[s["arch"]][0]  # hidden layers
        code = (
            f"{s['latent_dim']} bits"
            if latent == "bernoulli"
            else (f"{s['latent_dim']} variables of {s['categories']} categories")
        )
        sizes = f"{s['arch']}, 64-{'-'.join([str(s['hidden'])] * layers)}-{code}"
    return f"{sizes}, Adam {s['lr']:g}, batch {s['batch_size']}"


def main() -> None:
    cli = parser(__doc__, threads=0)
    cli.add_argument("--latent", choices=LATENTS, default="gaussian")
    cli.add_argument("--epochs", type=int, default=100)
    cli.add_argument("--seeds", type=int, default=3)
    cli.add_argument("--out", type=Path, help="default: results/vae_digits[_LATENT]")
    args = parse(cli)
    gaussian = args.latent == "gaussian"
    out = args.out or Path("results/vae_digits" + ("" if gaussian else f"_{args.latent}"))
    contenders = compared(args.latent)
    latent = [] if gaussian else [f"task.latent={args.latent}"]
    reference = next(iter(contenders))
    default = [] if gaussian else [*latent, *contenders[reference]]

    _, default_seconds = train(default)
    rows = []
    no_probe = ["task.grad_var_every=0", "task.checkpoint=false"]
    for seed in range(args.seeds):
        budget = None
        for name, overrides in contenders.items():
            common = [*latent, *overrides, *no_probe, f"seed={seed}"]
            final, _ = train([*common, f"task.epochs={args.epochs}"])
            budget = budget or final.time_s  # the reference comes first and sets the budget
            rows.append(
                {
                    "comparison": f"equal steps ({final.step})",
                    "estimator": name,
                    "seed": seed,
                    **final[COLUMNS],
                }
            )
            final, _ = train([*common, "task.epochs=100000", f"task.max_seconds={budget}"])
            rows.append(
                {
                    "comparison": f"equal time ({budget:.2f} s)",
                    "estimator": name,
                    "seed": seed,
                    **final[COLUMNS],
                }
            )
    table = pd.DataFrame(rows)
    table["machine"] = machine()
    write_table(table, out / "quality.csv")

    table["comparison"] = table.comparison.str.replace(r" \(.*", "", regex=True)
    summary = (
        table.sort_values("comparison", kind="stable")
        .groupby(["comparison", "estimator"], sort=False)
        .agg(
            draws=("num_samples", "first"),
            steps=("step", "median"),
            train_seconds=("time_s", "mean"),
            train_elbo=("train_set_elbo", "mean"),
            test_elbo=("test_elbo", "mean"),
            test_elbo_sd=("test_elbo", "std"),
            test_iwae=("test_iwae", "mean"),
            test_iwae_sd=("test_iwae", "std"),
        )
    )
    summary["steps"] = summary["steps"].round().astype(int)
    run = "10 epochs of reparam" if gaussian else f"10 epochs of {reference}"
    text = (
        f"Digits VAE, {args.latent} latent ({describe(args.latent)}), {args.seeds} seeds, mean "
        f"and sd; equal steps: {args.epochs} epochs; equal time: {reference}'s training time.\n"
        f"One default run ({run}, probes and IWAE included) took {default_seconds:.1f} s of "
        f"wall-clock. Machine: {machine()}.\n\n" + markdown_table(summary.reset_index()) + "\n"
    )
    atomic_write(out / "quality.md", lambda handle: handle.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()

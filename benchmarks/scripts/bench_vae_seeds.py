"""Seeds side by side against seeds apart: the training seconds of N seeds of the reparam VAE.

``python -m benchmarks.scripts.bench_vae_seeds [--device cuda]`` trains the default VAE (784-400-20,
Adam 1e-3, batch 128) on random images of MNIST's shape for ``--steps`` steps, N seeds at once in
one run (``task.parallel_seeds=N``) and the same N seeds one run after another, for N in
``--seeds``, in turn, ``--repeats`` times, and reports the median training seconds of each (the
harness's own clock; probes, IWAE and checkpoints off) and their ratio. On a GPU, where such a step
is bound by kernel launches, each seed past the first should add little to the batched step; on a
CPU the arithmetic grows with N and side by side is no faster. Writes
``results/perf/vae_seeds_<device>.csv``.

``--tiny`` times a tiny VAE instead (64-16-2 on the bundled 8x8 digits, batch 8, as many epochs
as ``--steps`` takes): a step bound by per-op overhead on a CPU too, as the default model's step
is on a GPU, so that a CPU shows what side by side does in that regime. Writes
``results/perf/vae_seeds_tiny_<device>.csv``.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.experiment import run_overrides
from benchmarks.scripts.bench_vae import TINY
from benchmarks.scripts.perf import parse, parser, speed_csv, write_report
from benchmarks.tasks.vae import data


def training_seconds(overrides: list[str], device) -> float:
    """The harness's training clock at the end of one run (every seed's rows carry it)."""
    return float(run_overrides(overrides, device).tables["eval"].time_s.iloc[-1])


def main() -> None:
    cli = parser(__doc__, "vae_seeds_{device}", repeats=3, device=True, steps=200)
    cli.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2, 4, 8], help="values of N to time"
    )
    cli.add_argument(
        "--images", type=int, default=data.MNIST_SIZES["train"], help="random training images"
    )
    cli.add_argument("--tiny", action="store_true", help="a 64-16-2 VAE on digits, batch 8")
    args = parse(cli)
    device = args.device
    if args.tiny and args.out == speed_csv("vae_seeds_{device}", device):
        args.out = speed_csv("vae_seeds_tiny_{device}", device)

    with tempfile.TemporaryDirectory() as scratch:
        common = [
            "task=vae",
            "estimator=reparam",
            f"task.max_steps={args.steps}",
            "task.iwae_k=0",
            "task.grad_var_every=0",
            "task.checkpoint=false",
        ]
        if args.tiny:  # as many epochs as it takes: max_steps stops the run
            _, hidden, latent, batch = TINY  # on digits, whose images are TINY's 64 pixels
            common += ["dataset=digits", f"task.epochs={args.steps}", f"task.hidden={hidden}"]
            common += [f"task.latent_dim={latent}", f"task.batch_size={batch}"]
        else:
            data.write_random_mnist(Path(scratch), {**data.MNIST_SIZES, "train": args.images})
            common += ["dataset=mnist", f"dataset.data_dir={scratch}", "task.epochs=1"]
        run_overrides([*common, "task.max_steps=20", "task.parallel_seeds=2"], device)  # warm-up
        together: dict[int, list[float]] = {n: [] for n in args.seeds}
        apart: dict[int, list[float]] = {n: [] for n in args.seeds}
        for _ in range(args.repeats):  # in turn, so that a slow spell hits every N
            for n in args.seeds:
                together[n].append(training_seconds([*common, f"task.parallel_seeds={n}"], device))
                apart[n].append(
                    sum(training_seconds([*common, f"seed={s}"], device) for s in range(n))
                )

    rows = [
        {
            "seeds": n,
            "device": device.type,
            "steps": args.steps,
            "side_by_side_s": statistics.median(together[n]),
            "apart_s": statistics.median(apart[n]),
        }
        for n in args.seeds
    ]
    table = pd.DataFrame(rows)
    table["speedup"] = table.apart_s / table.side_by_side_s
    one = table.side_by_side_s[table.seeds == 1]
    if len(one):
        table["ratio_to_one_seed"] = table.side_by_side_s / one.iloc[0]
    write_report(table, args.out, device=device)


if __name__ == "__main__":
    main()

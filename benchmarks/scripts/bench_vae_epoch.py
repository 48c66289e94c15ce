"""Seconds per training epoch at MNIST's size for each Gaussian-latent VAE estimator.

``python -m benchmarks.scripts.bench_vae_epoch [--device cuda]`` trains the default VAE (784-400-20,
Adam 1e-3, batch 128) for one epoch with each estimator through the harness (``task=vae
dataset=mnist``, gradient probes, IWAE and checkpoints off), in turn, ``--repeats`` times, and
reports the median training seconds of the epoch: the harness's own clock, which leaves evaluation
out and on a GPU counts the waits for the device where the trainer reads its steps back. With the
MNIST files under ``--data-dir`` it reads them; without them it writes random images of MNIST's
shape (60000 and 10000 of 28x28) to a temporary folder, since an epoch's time does not depend on
the pixel values. Writes
``results/perf/vae_epoch_<device>.csv``.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.experiment import run_overrides
from benchmarks.scripts.perf import parse, parser, write_report
from benchmarks.tasks.vae import data
from benchmarks.tasks.vae.settings import COMPARED


def has_mnist(data_dir: Path) -> bool:
    raw = data_dir / data.IDX_FOLDERS["mnist"] / "raw"
    return all(data.find_idx(raw, stem) for stem in data.IDX_FILES.values())


def main() -> None:
    cli = parser(__doc__, "vae_epoch_{device}", repeats=3, device=True)  # repeats: epochs
    cli.add_argument("--data-dir", type=Path, default=Path("data"), help="MNIST's data_dir")
    cli.add_argument(
        "--images", type=int, default=data.MNIST_SIZES["train"], help="random training images"
    )
    args = parse(cli)
    device = args.device

    with tempfile.TemporaryDirectory() as scratch:
        data_dir, source = args.data_dir, "MNIST"
        if not has_mnist(data_dir):
            data_dir, source = Path(scratch), "random images of MNIST's shape"
            data.write_random_mnist(data_dir, {**data.MNIST_SIZES, "train": args.images})
        common = [
            "task=vae",
            "dataset=mnist",
            f"dataset.data_dir={data_dir}",
            "task.epochs=1",
            "task.iwae_k=0",
            "task.grad_var_every=0",
            "task.checkpoint=false",
        ]
        run_overrides([*common, "task.max_steps=20"], device)  # warm-up: allocator, kernels
        seconds: dict[str, list[float]] = {name: [] for name in COMPARED}
        steps: dict[str, int] = {}
        for _ in range(args.repeats):  # in turn, so that a slow spell hits every estimator
            for name, overrides in COMPARED.items():
                result = run_overrides([*common, *overrides], device)
                final = result.tables["eval"].iloc[-1]  # its clock: training only
                seconds[name].append(float(final.time_s))
                steps[name] = int(final.step)

    rows = [
        {
            "estimator": name,
            "device": device.type,
            "data": source,
            "steps": steps[name],
            "epoch_seconds": statistics.median(times),
            "ms_per_step": 1e3 * statistics.median(times) / steps[name],
        }
        for name, times in seconds.items()
    ]
    table = pd.DataFrame(rows)
    table["ratio_to_reparam"] = table.epoch_seconds / table.epoch_seconds.iloc[0]
    write_report(table, args.out, device=device)


if __name__ == "__main__":
    main()

"""The committed reference sweeps: ``python -m benchmarks.scripts.reference [SWEEP ...]`` (all
of them by default; named ones alone replace only their folders).

Each sweep is a Hydra experiment config, ``conf/experiment/NAME.yaml`` (what it runs, and why, is
written there), run through the normal command line as
``python -m benchmarks.run -m +experiment=NAME hydra.sweep.dir=results/reference/NAME``, ending
with its summary and figures (the plot callback). A sweep of several parts (options that only some
estimators take, such as the moving-average baseline) is a folder of them,
``conf/experiment/NAME/partN_*.yaml``, run in that order into the same folder, each part's runs
into ``partN_JOB``; one summary and set of figures then covers them all. An experiment's task is
both its defaults' override (so that ``+experiment=NAME`` composes alone) and its first sweep
parameter (so that each run's status records ``task=NAME`` among its overrides).

Each sweep's folder is replaced as a whole, then pruned to what is committed (``PRUNED`` goes);
checkpoints are not written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.config import CONF_DIR

OUT = Path("results/reference")
# A reference folder keeps each run's tables and status.json (its task and overrides), and per
# sweep Hydra's multirun.yaml (the composed config and the sweep's command line; for a sweep of
# several parts, the last part's), summary.md and the PNG figures. PRUNED goes: Hydra's record of
# each run, the runs' log lines, and what `python -m benchmarks.plot FOLDER` rebuilds from the
# tables in seconds (summary.csv, the union of every table; the PDF figures).
PRUNED = ("*/.hydra", "*/run.log", "summary.csv", "plots/*.pdf")


def experiments(folder: Path = CONF_DIR / "experiment") -> dict[str, list[str]]:
    """Each sweep's name and its experiment configs in the order they run: NAME.yaml alone, or
    the parts in NAME/ by name (part0_..., part1_...)."""
    sweeps = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".yaml":
            sweeps[path.stem] = [path.stem]
        elif path.is_dir():
            sweeps[path.name] = [f"{path.name}/{part.stem}" for part in sorted(path.glob("*.yaml"))]
    return sweeps


SWEEPS = experiments()


# Sweeps of tiny tensors (the learned control variates take thousands of steps on 256 draws) run
# on one torch thread: a second one only waits, and while another process shares the 2 cores the
# bernoulli_theta sweep took 710 s on two threads against 123 s on one.
# So do the blr runs (50 x 32 logits a step): 500 steps of reinforce took 10 s on two threads,
# 0.5 s on one.
ONE_THREAD = {
    "bernoulli",
    "bernoulli_theta",
    "bernoulli_optimize",
    "vae_bernoulli",
    "vae_bernoulli_iwae",
    "blr",
}


def prune(folder: Path) -> None:
    """Remove what a finished sweep's folder does not commit (``PRUNED``)."""
    for pattern in PRUNED:
        for path in folder.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    unknown = [name for name in names if name not in SWEEPS]
    if unknown:
        print(
            f"error: sweep {unknown[0]!r} is unknown; sweeps: {', '.join(SWEEPS)}", file=sys.stderr
        )
        return 2
    for name in names or SWEEPS:
        shutil.rmtree(OUT / name, ignore_errors=True)
    for name in names or SWEEPS:
        parts = SWEEPS[name]
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if name in ONE_THREAD else None
        for part, experiment in enumerate(parts):
            several = len(parts) > 1  # run folders partN_JOB (all named alike: they sort)
            subdir = [f"hydra.sweep.subdir=part{part}_${{hydra.job.num}}"] if several else []
            command = [
                sys.executable,
                "-m",
                "benchmarks.run",
                "-m",
                f"+experiment={experiment}",
                f"hydra.sweep.dir={OUT / name}",
                *subdir,
            ]
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        if len(parts) > 1:  # each part's callback summarized its own runs: now all of them
            command = [sys.executable, "-m", "benchmarks.plot", str(OUT / name)]
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        prune(OUT / name)
    print(f"reference sweep written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

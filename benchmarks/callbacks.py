"""Hydra callbacks: a finished sweep ends with its summary and figures."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from benchmarks.plot import natural_order, plot, run_marks, stale_runs


class PlotSweep(Callback):
    """After every multirun: ``benchmarks.plot`` on this sweep's runs, and a non-zero exit
    naming the failed jobs, if any (their results are left out; everyone else's are kept).

    Runs an earlier sweep left in the same folder, which this one did not rewrite, stay on disk
    but out of the summary, with a line saying so."""

    before: dict[Path, int] = {}  # the run marks in the sweep folder when the sweep started

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        self.before = run_marks(root) if root.is_dir() else {}

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        stale = stale_runs(root, self.before)
        if stale:
            names = ", ".join(str(r.relative_to(root)) for r in sorted(stale, key=natural_order))
            print(f"left out of the summary: {names}, an earlier sweep's runs in {root}")
        paths, statuses = plot(root, stale)
        print(f"\nsweep summary and figures in {root}:")
        for path in paths:
            print(f"  {path}")
        failed = statuses[statuses["status"] == "failed"]
        for row in failed.itertuples():
            print(f"job {row.run} ({row.overrides}) failed: {row.error}", file=sys.stderr)
        if not failed.empty:
            sys.exit(1)

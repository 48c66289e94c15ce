"""Hydra callbacks: a finished sweep ends with its summary and figures, and so does one that
Ctrl-C stopped (``end_interrupted_sweep``, which the runner calls)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class PlotSweep(Callback):
    """After every multirun: ``benchmarks.plot`` on this sweep's runs, and a non-zero exit
    naming the failed jobs, if any (their results are left out; everyone else's are kept).

    Runs an earlier sweep left in the same folder, which this one did not rewrite, stay on disk
    but out of the summary, with a line saying so."""

    before: dict[Path, int] = {}  # the run marks in the sweep folder when the sweep started

    # benchmarks.plot is imported in the methods: its seaborn and matplotlib take a second to
    # import, which every single run would pay for a callback that only sweeps use.

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from benchmarks.plot import run_marks

        global _running
        root = Path(config.hydra.sweep.dir)
        self.before = run_marks(root) if root.is_dir() else {}
        _running = (self, config)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        global _running
        _running = None
        self.summarize(config)

    def summarize(self, config: DictConfig) -> None:
        """The summary and figures of this sweep's runs; exit 1 naming the failed jobs."""
        from benchmarks.plot import natural_order, plot, stale_runs

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


_running: tuple[PlotSweep, DictConfig] | None = None  # the sweep under way, if any


def end_interrupted_sweep() -> None:
    """After Ctrl-C stopped a sweep: the summary of the jobs that finished, naming the one that
    was interrupted (Hydra runs no ``on_multirun_end`` then); nothing outside a sweep."""
    global _running
    if _running is None:
        return
    callback, config = _running
    _running = None
    with contextlib.suppress(SystemExit):  # failed jobs exit 1; the interrupt's 130 prevails
        callback.summarize(config)

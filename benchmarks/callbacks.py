"""Hydra callbacks: a finished sweep ends with its summary and figures."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from benchmarks.plot import plot


class PlotSweep(Callback):
    """After every multirun: ``benchmarks.plot`` on the sweep directory, and a non-zero exit
    naming the failed jobs, if any (their results are left out; everyone else's are kept)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        paths, statuses = plot(root)
        print(f"\nsweep summary and figures in {root}:")
        for path in paths:
            print(f"  {path}")
        failed = statuses[statuses["status"] == "failed"]
        for row in failed.itertuples():
            print(f"job {row.run} ({row.overrides}) failed: {row.error}", file=sys.stderr)
        if not failed.empty:
            sys.exit(1)

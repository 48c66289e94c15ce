"""What the speed benchmarks share: the one interleaved-median timer, the machine a table was
measured on, where a table goes, and writing it.

Contenders are timed in turn, round after round, and compared by their medians, so that a
shared machine's changing speed falls on all of them alike: ratios measured side by side.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from benchmarks.experiment import resolve_device
from benchmarks.results import write_table
from estimators.base import ConfigError

CPU = torch.device("cpu")


def interleaved_medians(
    contenders: dict[str, Callable[[], object]],
    repeats: int,
    inner: int = 1,
    device: torch.device = CPU,
    warmup: int = 3,
) -> dict[str, float]:
    """Median seconds per call of each contender, after ``warmup`` untimed calls each, timing
    them in turn ``repeats`` times, ``inner`` calls a timing (a GPU's queued work finished
    before each clock reading)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for run in contenders.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                run()
            sync()
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}


def machine(device: torch.device | None = None) -> str:
    """The CPU model, core count and torch build, and the GPU where ``device`` is one."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"
    if device is not None and device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return text


def write_report(
    table: pd.DataFrame, out: Path, digits: int = 4, device: torch.device | None = None
) -> None:
    """A speed table with the machine it ran on: written to ``out`` and printed."""
    table["machine"] = machine(device)
    write_table(table, out)
    text = table.drop(columns="machine").to_string(
        index=False, float_format=lambda v: f"{v:.{digits}g}"
    )
    print(f"{text}\n\nmachine: {table.machine.iloc[0]}\nwrote {out}")


def speed_csv(stem: str, device: torch.device) -> Path:
    """Where a speed table goes by default: a GPU's timings beside, not over, the CPU's."""
    return Path(f"results/perf/{stem}{'_cuda' if device.type == 'cuda' else ''}.csv")


def device_or_exit(name: str) -> torch.device:
    """The ``--device`` to time on, or one line and exit code 2 where it is unknown or absent."""
    try:
        return resolve_device(name)
    except ConfigError as error:
        print(f"error: --{error}", file=sys.stderr)
        sys.exit(2)

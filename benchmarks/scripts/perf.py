"""What the speed benchmarks share: their command line, the one interleaved-median timer, the
machine a table was measured on, where a table goes, and writing it.

Contenders are timed in turn, round after round, and compared by their medians, so that a
shared machine's changing speed falls on all of them alike: ratios measured side by side.
"""

from __future__ import annotations

import argparse
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
from estimators.errors import ConfigError

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
    """Where a speed table goes by default: a GPU's timings beside, not over, the CPU's (as
    STEM_cuda.csv, or where the stem holds ``{device}``, with the device's name there)."""
    if "{device}" in stem:
        return Path(f"results/perf/{stem.format(device=device.type)}.csv")
    return Path(f"results/perf/{stem}{'_cuda' if device.type == 'cuda' else ''}.csv")


def device_or_exit(name: str) -> torch.device:
    """The ``--device`` to time on, or one line and exit code 2 where it is unknown or absent."""
    try:
        return resolve_device(name)
    except ConfigError as error:
        print(f"error: --{error}", file=sys.stderr)
        sys.exit(2)


def parser(
    doc: str,
    stem: str | None = None,
    repeats: int | None = None,
    *,
    n: int | None = None,
    steps: int | None = None,
    device: bool = False,
    threads: int | None = None,
) -> argparse.ArgumentParser:
    """The flags the scripts share, each where asked for with its default: --out (a table under
    results/perf/ named by ``stem``), --repeats, --n, --steps, --device and --threads (0: torch's
    own number); a script adds its own flags and reads them with ``parse``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="timings per contender")
    if n is not None:
        parser.add_argument("--n", type=int, default=n, help="estimates per timing")
    if steps is not None:
        parser.add_argument("--steps", type=int, default=steps, help="training steps per timing")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    if threads is not None:
        why = f"default {threads}: steadier" if threads else "default: torch's; 1 when shared"
        parser.add_argument("--threads", type=int, default=threads, help=f"torch threads ({why})")
    if stem is not None:
        gpu = f", {stem}_cuda.csv on a GPU" if device and "{device}" not in stem else ""
        parser.add_argument("--out", type=Path, help=f"default: results/perf/{stem}.csv{gpu}")
        parser.set_defaults(stem=stem)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``device`` resolved (the CPU where there is no --device; one line
    and exit code 2 where it is unknown or absent), torch's threads set and --out's default."""
    args = parser.parse_args(argv)
    args.device = device_or_exit(args.device) if "device" in args else CPU
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if "stem" in args:
        args.out = args.out or speed_csv(args.stem, args.device)
    return args

"""How often the timing gate cries wolf on an unchanged tree.

``python -m benchmarks.scripts.regression.false_alarms --runs 10`` runs the pytest-benchmark suite
(``tests/speed``, from the repository root) ``--runs`` times, compares each run's ratios with the
committed baseline, and reports per benchmark the largest growth seen and how many runs the gate
would have failed. Writes ``results/perf/timing_false_alarms.csv``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.results import write_table
from benchmarks.scripts.perf import machine, parse, parser
from benchmarks.scripts.regression import BASELINE, THRESHOLD, compare, ratios_from_json


def main() -> None:
    cli = parser(__doc__, "timing_false_alarms")
    cli.add_argument("--runs", type=int, default=10)
    args = parse(cli)
    baseline = json.loads(BASELINE.read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            path = Path(tmp) / f"run{run}.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "tests/speed",
                    "-q",
                    f"--benchmark-json={path}",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            ratios = ratios_from_json(path)
            alarm = bool(compare(ratios, baseline, THRESHOLD))
            for name, ratio in ratios.items():
                rows.append(
                    {
                        "run": run,
                        "benchmark": name,
                        "ratio": ratio,
                        "growth": ratio / baseline[name],
                        "run_alarmed": alarm,
                    }
                )
            print(f"run {run}: {'ALARM' if alarm else 'pass'}", flush=True)
    table = pd.DataFrame(rows)
    table["machine"] = machine()
    write_table(table, args.out)
    per = table.groupby("benchmark")["growth"].agg(["min", "max"])
    print(per.to_string(float_format=lambda v: f"{v:.3f}"))
    alarms = table.groupby("run")["run_alarmed"].first().sum()
    print(
        f"\n{alarms} false alarms in {args.runs} runs at threshold {THRESHOLD} "
        f"(largest growth x{table.growth.max():.3f}); wrote {args.out}"
    )


if __name__ == "__main__":
    main()

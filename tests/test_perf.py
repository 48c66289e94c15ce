"""The scripts' one command line (benchmarks.scripts.perf): each shared flag where a script asks for
it, --device resolved (one line and exit code 2 where it is unknown), torch's threads set, and
--out's default, a GPU's table beside the CPU's."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from cli import ROOT

from benchmarks.scripts import perf

SCRIPTS = [
    *sorted(f"benchmarks.scripts.{p.stem}" for p in (ROOT / "benchmarks/scripts").glob("bench_*")),
    "benchmarks.scripts.vae_quality",
    "benchmarks.scripts.regression.false_alarms",
]


@pytest.mark.parametrize("module", SCRIPTS, ids=lambda module: module.rsplit(".", 1)[1])
def test_every_script_builds_its_command_line_on_the_shared_one(module, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main()
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and ("--repeats" in text or "bench_" not in module)


def test_out_defaults_to_the_stems_table_and_a_gpus_beside_it(monkeypatch):
    args = perf.parse(perf.parser("Doc.", "x_speed", repeats=3, n=10, device=True), [])
    assert (args.out, args.device, args.repeats, args.n) == (
        Path("results/perf/x_speed.csv"),
        torch.device("cpu"),
        3,
        10,
    )
    monkeypatch.setattr(perf, "resolve_device", torch.device)  # as if a GPU were here
    cuda = ["--device=cuda"]
    assert perf.parse(perf.parser("Doc.", "x_speed", device=True), cuda).out == Path(
        "results/perf/x_speed_cuda.csv"
    )
    assert perf.parse(perf.parser("Doc.", "x_{device}", device=True), cuda).out == Path(
        "results/perf/x_cuda.csv"
    )
    assert perf.parse(perf.parser("Doc.", "x", device=True), [*cuda, "--out=y.csv"]).out == Path(
        "y.csv"
    )


def test_threads_are_set_where_the_script_takes_them_and_0_leaves_torchs(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    perf.parse(perf.parser("Doc.", threads=1), [])
    perf.parse(perf.parser("Doc.", threads=0), [])
    perf.parse(perf.parser("Doc.", threads=0), ["--threads=2"])
    perf.parse(perf.parser("Doc."), [])
    assert calls == [1, 2]


def test_an_unknown_device_is_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as stop:
        perf.parse(perf.parser("Doc.", device=True), ["--device=tpu"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --device='tpu': accepted devices are cpu, cuda, auto"
    )

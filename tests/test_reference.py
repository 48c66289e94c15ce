"""The committed results: a reference sweep's folder is pruned to what is committed, each
committed run names its task and the overrides its experiment config gives it, each committed
summary is what its runs give, and results/README.md lists every committed folder and table."""

from __future__ import annotations

import json
import re

import pytest
from cli import ROOT
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from benchmarks import plot, tasks
from benchmarks.config import CONF_DIR
from benchmarks.scripts import reference

RESULTS = ROOT / "results"
FOLDERS = sorted(path for path in (RESULTS / "reference").iterdir() if path.is_dir())
IGNORED = {"runs", "multiruns", "mlruns"}  # ad-hoc runs, which git ignores


def test_a_finished_sweep_is_pruned_to_what_is_committed(tmp_path):
    kept = [
        "0/metrics.csv",
        "0/status.json",
        "part1_0/train.csv",
        "part1_0/model.json",
        "part1_0/status.json",
        "multirun.yaml",
        "summary.md",
        "plots/toy_variance_vs_k.png",
    ]
    pruned = [
        "0/.hydra/config.yaml",
        "0/.hydra/overrides.yaml",
        "0/run.log",
        "part1_0/run.log",
        "summary.csv",
        "plots/toy_variance_vs_k.pdf",
    ]
    for name in kept + pruned:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    reference.prune(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(kept) and not (tmp_path / "0/.hydra").exists()


def test_the_committed_reference_folders_are_the_reference_sweeps():
    assert [folder.name for folder in FOLDERS] == sorted(reference.SWEEPS)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_a_committed_summary_is_what_its_runs_tables_and_statuses_give(folder):
    """No .hydra/ needed: each status names its task and records its overrides."""
    for path in folder.glob("*/status.json"):
        status = json.loads(path.read_text())
        assert tasks.lookup(status["task"]) is not None and status["overrides"], path
    assert (folder / "multirun.yaml").exists()
    summary, statuses, classes = plot.collect(folder)
    summary["label"] = plot.estimator_labels(summary)
    assert plot.headline(summary, statuses, classes) == (folder / "summary.md").read_text()


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_each_committed_run_recorded_what_its_experiment_config_sweeps_for_its_job(folder):
    """A run in ``JOB/`` (``partN_JOB/``) records the overrides that Hydra's sweeper makes of
    conf/experiment/NAME.yaml (of part N in conf/experiment/NAME/) for that job."""
    parser = OverridesParser.create()
    jobs = []
    for experiment in reference.SWEEPS[folder.name]:
        params = OmegaConf.load(CONF_DIR / f"experiment/{experiment}.yaml").hydra.sweeper.params
        args = [*(f"{key}={value}" for key, value in params.items()), f"+experiment={experiment}"]
        (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(args), None)
        jobs.append(batch)
    runs = sorted(folder.glob("*/status.json"))
    assert len(runs) == sum(len(batch) for batch in jobs)
    for path in runs:
        part, job = re.fullmatch(r"(?:part(\d+)_)?(\d+)", path.parent.name).groups()
        overrides = json.loads(path.read_text())["overrides"]
        assert overrides == jobs[int(part or 0)][int(job)], path


def test_the_results_readme_lists_every_committed_folder_and_table():
    listed = set(re.findall(r"`([^`]+)`", (RESULTS / "README.md").read_text()))
    wanted = {f"reference/{folder.name}/" for folder in FOLDERS}
    for folder in RESULTS.iterdir():
        if folder.is_dir() and folder.name not in IGNORED | {"reference"}:
            wanted |= {f"{folder.name}/{path.name}" for path in folder.iterdir()}
    assert not wanted - listed, f"results/README.md misses {sorted(wanted - listed)}"
    # and lists nothing that is not there
    named = {path for path in listed if re.fullmatch(r"(perf|reference|vae_\w+)/[\w./]*", path)}
    assert not {path for path in named if not (RESULTS / path).exists()}

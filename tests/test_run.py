"""The runner end to end in a subprocess, as a user calls it, bad inputs included."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from cli import interrupt, run, run_with_estimator
from extras import needs

from benchmarks.results import write_json, write_table

COLUMNS = [
    "estimator",
    "task",
    "cost",
    "k",
    "param",
    "dim",
    "mu",
    "sigma",
    "num_samples",
    "n_estimates",
    "seed",
    "grad_mean",
    "grad_var",
    "grad_var_lo",
    "grad_var_hi",
    "exact_grad",
    "exact_var",
    "bias",
    "z_score",
    "mse",
    "snr",
    "time_per_estimate_s",
]
SMALL = ["task.n_estimates=2000", "task.k=[1.0,2.0]"]


def test_a_run_prints_a_summary_and_writes_the_tidy_table(tmp_path):
    out = run("estimator=reinforce", *SMALL, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert set(COLUMNS) <= set(table.columns)
    assert len(table) == 4 * 2 * 2  # costs x k x {mu, sigma}
    assert set(table.param) == {"mu", "sigma"} and set(table.estimator) == {"reinforce"}
    assert "exact_grad" in out.stdout and "square" in out.stdout
    assert f"wrote metrics.csv into {tmp_path}" in out.stdout
    # The status names the task and records the command line, which is all benchmarks.plot reads.
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["task"] == "gaussian" and status["overrides"] == ["estimator=reinforce", *SMALL]


@pytest.mark.slow
def test_same_seed_gives_the_same_table(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert (
            run("estimator=reinforce_baseline", *SMALL, "seed=3", f"hydra.run.dir={d}").returncode
            == 0
        )
    ta, tb = (pd.read_csv(d / "metrics.csv") for d in (a, b))
    timing = ["time_per_estimate_s", "work_normalized_var"]
    pd.testing.assert_frame_equal(ta.drop(columns=timing), tb.drop(columns=timing))


@pytest.mark.slow
def test_a_multirun_writes_one_table_per_estimator(tmp_path):
    out = run(
        "-m",
        "estimator=reparam,reinforce,reinforce_baseline",
        *SMALL,
        "task.costs=[square]",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    tables = sorted(tmp_path.glob("*/metrics.csv"))
    assert len(tables) == 3
    names = {pd.read_csv(t).estimator.iloc[0] for t in tables}
    assert names == {"reparam", "reinforce", "reinforce_baseline"}


@pytest.mark.slow
def test_optimize_mode_writes_its_table(tmp_path):
    out = run(
        "task.mode=optimize",
        "task.costs=[square]",
        "task.k=[2.0]",
        "task.optimize.steps=50",
        f"hydra.run.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "optimize.csv")
    assert table.step.iloc[-1] == 50 and not (tmp_path / "metrics.csv").exists()


@pytest.mark.slow
def test_a_run_into_a_used_folder_replaces_the_earlier_runs_outputs(tmp_path):
    # An earlier failed run's status and another mode's table are not this run's.
    write_json({"status": "failed", "error": "earlier"}, tmp_path / "status.json")
    (tmp_path / "optimize.csv").write_text("step\n0\n")
    out = run("estimator=reinforce", *SMALL, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "status.json").read_text()) == {
        "status": "completed",
        "task": "gaussian",
        "task_class": "benchmarks.tasks.toy.GaussianToy",
        "overrides": ["estimator=reinforce", *SMALL],
    }
    assert (tmp_path / "metrics.csv").exists() and not (tmp_path / "optimize.csv").exists()
    # Bad input into the same folder leaves it as it was.
    out = run("estimator=reinforce", "task.sigma=0", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2 and (tmp_path / "metrics.csv").exists()


def slow(*values):
    """A parametrized case of the slow suite: every bad input still runs in .ci/run, the fast
    suite keeps one of each kind (a task key, an estimator option, a config group, a missing key,
    a malformed override, a logger folder)."""
    return pytest.param(*values, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    "args, message",
    [
        (["task.sigma=-1"], "task.sigma=-1: must be > 0"),
        slow(["task.n_estimates=0"], "task.n_estimates=0: must be a positive integer"),
        slow(
            ["task.costs=[square,quartic]"], "cost 'quartic' is unknown; known costs: square, cos"
        ),
        slow(
            ["estimator=reinforce_baseline", "task.num_samples=1"],
            "task.num_samples=1: estimator 'reinforce_baseline' (baseline=loo) "
            "needs an integer num_samples >= 2",
        ),
        (
            ["estimator=reinforce_baseline", "estimator.baseline=mean"],
            "baseline='mean' is unknown; known baselines: loo, ema, hook",
        ),
        slow(["device=tpu"], "device='tpu': accepted devices are cpu, cuda, auto"),
        slow(["task.k=2.0"], "task.k=2.0: must be a non-empty list of numbers, e.g. [1.0]"),
        slow(["task.n_estimates=1"], "task.n_estimates=1: a variance needs at least 2"),
        slow(
            ["estimator=reinforce_baseline", "estimator.decay=2"],
            "estimator.decay=2: the moving-average decay must be in [0, 1)",
        ),
        slow(["estimator=nvil"], "estimator=nvil works with task=vae only"),
        slow(["threads=0"], "threads=0: must be a positive integer or null"),
        (["estimator=nope"], "estimator='nope': accepted estimators are arm, arms, carms, disarm,"),
        (
            ["task=categorical", "estimator=rao_blackwell_st", "estimator.temperature=0"],
            "estimator.temperature=0: must be a number > 0",
        ),
        (
            ["task=categorical", "estimator=rao_blackwell_st", "estimator.rb_samples=0"],
            "estimator.rb_samples=0: must be a positive integer",
        ),
        slow(
            ["task=gaussian", "estimator=indecater"],
            "estimator 'indecater' does not apply to Independent(Normal)",
        ),
        slow(
            ["task=nope"],
            "task='nope': accepted tasks are bernoulli, blr, categorical, custom, gaussian, "
            "gaussian_lvm, vae",
        ),
        slow(["task=vae", "dataset=mnst"], "dataset='mnst': accepted datasets are digits,"),
        slow(["logger=wandb"], "logger='wandb': accepted loggers are mlflow, none, tensorboard"),
        pytest.param(
            ["logger=tensorboard", "logger.log_dir=/sys/x"],
            "logger.log_dir=/sys/x: cannot write into /sys (",
            marks=needs("tensorboard"),
        ),
        slow(
            ["seeds=1"], "seeds=1: no such key; the keys of the config are task, estimator, seed,"
        ),
        slow(
            ["task=vae", "task.epoch=1"],
            "task.epoch=1: no such key; the keys of task=vae are latent, arch,",
        ),
        (
            ["estimator=reinforce_baseline", "estimator.baselin=loo"],
            "estimator.baselin=loo: no such key; the keys of estimator=reinforce_baseline "
            "are name, baseline, decay",
        ),
        (["seed"], "'seed' is not a key=value override (missing EQUAL at '<EOF>'); see https"),
    ],
)
def test_bad_input_gets_one_line_exit_2_and_nothing_on_disk(tmp_path, args, message):
    run_dir = tmp_path / "2026-01-01" / "run"  # as Hydra's default results/runs/DATE/TIME_...
    out = run(*args, f"hydra.run.dir={run_dir}")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not run_dir.parent.exists()


def test_a_sweep_checks_every_option_and_key_before_its_first_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "task=gaussian,vae", "estimator=reparam,reinforce", "task.k=[1]"]
    out = run(*args, f"hydra.sweep.dir={sweep_dir}")
    assert out.returncode == 2
    assert out.stderr.startswith("error: task.k=[1]: no such key; the keys of task=vae are")
    assert len(out.stderr.strip().splitlines()) == 1 and not sweep_dir.exists()


def test_write_table_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    write_table(pd.DataFrame({"a": [1, 2]}), path)

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt  # as a kill would, in the middle of writing

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(KeyboardInterrupt):
        write_table(pd.DataFrame({"a": [3]}), path)
    assert pd.read_csv(path).a.tolist() == [1, 2]  # the old table, whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary left


def test_the_speed_benchmark_runs_and_writes_its_table(tmp_path):
    out = run(
        "--n=20000",
        "--loop-n=20",
        "--repeats=1",
        f"--out={tmp_path / 'speed.csv'}",
        module="benchmarks.scripts.bench_toy",
    )
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "speed.csv")
    assert len(table) == 5 and (table.seconds_per_estimate > 0).all()
    assert table.machine.str.contains("torch").all()


def test_the_bernoulli_speed_benchmark_runs(tmp_path):
    out = run(
        "--n=20000",
        "--repeats=1",
        f"--out={tmp_path / 'speed.csv'}",
        module="benchmarks.scripts.bench_bernoulli",
    )
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(tmp_path / "speed.csv")) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_run_on_the_gpu(tmp_path):
    out = run("device=cuda", *SMALL, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert set(table.device) == {"cuda"} and (table.z_score.abs() < 5).all()


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = run("device=cuda", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == "error: device='cuda': no CUDA device is available here; use cpu or auto"
    )


@pytest.mark.slow
def test_a_vae_run_from_the_command_line(tmp_path):
    out = run(
        "task=vae",
        "estimator=reinforce_baseline",
        "task.epochs=1",
        "task.iwae_k=20",
        "task.grad_var_samples=4",
        f"hydra.run.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    assert "test_elbo" in out.stdout and "total_var" in out.stdout
    for name in ("train", "eval", "grad_var"):
        assert not pd.read_csv(tmp_path / f"{name}.csv").empty
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["task.lr=0"], "task.lr=0: must be a positive number"),
        (["task.batch_size=0"], "task.batch_size=0: must be a positive integer"),
        (["dataset=mnist", "dataset.data_dir=/nonexistent/data"], "dataset=mnist: "),
    ],
)
def test_bad_vae_input_gets_one_line(tmp_path, args, message):
    out = run("task=vae", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "run").exists()


BROKEN = """from estimators.base import Estimator, register


@register
class Broken(Estimator):
    name = "broken"

    def estimate(self, dist, f, num_samples):
        raise NotImplementedError("no sampler for this one")
"""


def test_an_estimator_that_raises_on_a_distribution_it_claims_stops_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    out = run_with_estimator(tmp_path, "broken", BROKEN, "task.k=[1.0]", f"hydra.run.dir={run_dir}")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "error: task=gaussian with estimator 'broken' failed: NotImplementedError: no sampler for "
        f"this one (traceback in {run_dir / 'run.log'})"
    )
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["error"] == "NotImplementedError: no sampler for this one"
    assert "Traceback" in (run_dir / "run.log").read_text()


LONG_OPTIMIZATION = [
    "task.mode=optimize",
    "task.costs=[square]",
    "task.k=[1.0]",
    "task.optimize.steps=100000000",
    "task.optimize.log_every=1",
]


@pytest.mark.slow
def test_ctrl_c_ends_in_one_line_with_the_status_and_the_rows_so_far(tmp_path):
    out = interrupt(
        *LONG_OPTIMIZATION, f"hydra.run.dir={tmp_path}", started=tmp_path / ".hydra/config.yaml"
    )
    assert out.returncode == 130, out.stderr
    (line,) = out.stderr.strip().splitlines()
    match = re.fullmatch(
        rf"interrupted at cost=square, k=1.0, step=(\d+); optimize.csv so far kept in {tmp_path}",
        line,
    )
    assert match, line
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert (status["cost"], status["k"], status["step"]) == ("square", 1.0, int(match[1]))
    table = pd.read_csv(tmp_path / "optimize.csv")
    assert list(table.step) == list(range(len(table))) and len(table) <= status["step"] + 1


@pytest.mark.slow
@pytest.mark.parametrize("multirun", [False, True])
def test_an_output_folder_that_cannot_be_written_gets_one_line_and_exit_2(tmp_path, multirun):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    for folder, reason in [
        (blocker / "run", f"cannot make the folder, {blocker} is a file"),
        ("/sys/x", "cannot write into /sys ("),
    ]:
        out = run(*(["-m"] if multirun else []), "task.n_estimates=100", f"{key}={folder}")
        assert out.returncode == 2, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"error: {key}={folder}: {reason}")
    assert blocker.read_text() == "keep me" and list(tmp_path.iterdir()) == [blocker]

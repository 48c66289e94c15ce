"""The experiment loggers: every float cell of every table a run writes reaches TensorBoard or
the MLflow store once, with its step, as in the CSV (MLflow's exactly, TensorBoard's rounded to
float32 as it stores scalars); read back offline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli import ROOT, interrupt, run
from extras import needs

from benchmarks.experiment import compose_config, run_config
from benchmarks.results import RunWriter
from estimators.errors import ConfigError

pytestmark = needs("tensorboard", "mlflow")

TOY = ["task.n_estimates=200", "task.k=[0.5,1.0,2.0]", "task.costs=[square,cos]"]
VAE = [  # three epochs of 6 steps: each table is written after each and again at the end
    "task=vae",
    "task.epochs=3",
    "task.batch_size=256",
    "task.hidden=16",
    "task.latent_dim=4",
    "task.iwae_k=20",
    "task.grad_var_every=4",
    "task.grad_var_samples=4",
    "task.eval_batch_size=500",
]
KEYS = {"metrics": ["cost", "param"], "grad_var": ["network", "param"]}
"""The columns that name a row's tag besides its table and column, in the runs here (the test's
own statement): the text columns that vary."""


def expected(name: str, table: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """Tag -> (step, value) of every non-empty float cell of ``table``, estimator options aside;
    the step is the ``step`` column, else the row's number within its keys."""
    keys = KEYS.get(name, [])
    if "step" in table:
        steps = table["step"]
    else:
        steps = table.groupby(keys, sort=False).cumcount()
    points: dict[str, list[tuple[int, float]]] = {}
    for i, row in table.iterrows():
        for column in table.columns:
            value = row[column]
            if column in keys or column.startswith("estimator.") or table[column].dtype != float:
                continue
            if not math.isnan(value):
                tag = "/".join([name, *(row[k] for k in keys), column])
                points.setdefault(tag, []).append((int(steps[i]), value))
    return points


def tensorboard_points(log_dir: Path) -> tuple[dict, str]:
    """Tag -> [(step, value)] of the event files in ``log_dir``, and the status text."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util.tensor_util import make_ndarray

    events = ea.EventAccumulator(str(log_dir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    events.Reload()
    read = {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }
    (status,) = events.Tensors("status/text_summary")
    return read, make_ndarray(status.tensor_proto).item().decode()


def mlflow_runs(store: Path, experiment: str) -> list:
    """The runs of ``experiment`` in the local store at ``store``, oldest first."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(store.as_uri())
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def mlflow_points(store: Path, experiment: str) -> tuple[dict, str]:
    """Tag -> [(step, value)] of the one run of ``experiment``, and its status tag."""
    from mlflow.tracking import MlflowClient

    (found,) = mlflow_runs(store, experiment)
    client = MlflowClient(store.as_uri())
    read = {
        key: [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, key)]
        for key in found.data.metrics
    }
    return read, found.data.tags["status"]


def logged(logger: str, run_dir: Path, experiment: str) -> tuple[dict, str]:
    if logger == "tensorboard":
        return tensorboard_points(run_dir / "tensorboard")
    return mlflow_points(run_dir.parent / "mlruns", experiment)


def as_float32(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """``points`` with their values as TensorBoard stores them."""
    return [(step, float(np.float32(value))) for step, value in points]


def run_with(logger: str, run_dir: Path, *overrides: str):
    """The run of ``overrides`` in ``run_dir`` with ``logger`` (MLflow's store beside it)."""
    store = [f"logger.tracking_uri={run_dir.parent / 'mlruns'}"] if logger == "mlflow" else []
    cfg = compose_config([f"logger={logger}", *store, *overrides])
    return run_config(cfg, RunWriter(run_dir))[1]


def assert_logged_once(read: dict, run_dir: Path, names: list[str], float32: bool) -> None:
    """Every cell of the CSVs ``names`` in ``read`` once, at its step, exactly (rounded to float32
    where ``float32``); nothing else."""
    want: dict = {}
    for name in names:
        want |= expected(name, pd.read_csv(run_dir / f"{name}.csv"))
    assert sorted(read) == sorted(want)
    for tag, points in want.items():  # as many points as rows, equal
        assert read[tag] == (as_float32(points) if float32 else points), tag


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_toy_run_logs_each_cell_of_its_metrics_once(tmp_path, logger):
    run_with(logger, tmp_path / "run", *TOY)
    read, status = logged(logger, tmp_path / "run", "gaussian")
    assert_logged_once(read, tmp_path / "run", ["metrics"], logger == "tensorboard")
    assert status == "completed"
    assert [v for _, v in read["metrics/cos/mu/k"]] == [0.5, 1.0, 2.0]  # the step is k's index


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_vae_run_logs_each_row_once_though_its_tables_are_written_each_epoch(tmp_path, logger):
    run_with(logger, tmp_path / "run", *VAE)
    read, status = logged(logger, tmp_path / "run", "vae")
    assert_logged_once(
        read, tmp_path / "run", ["train", "eval", "grad_var"], logger == "tensorboard"
    )
    assert [s for s, _ in read["train/train_elbo"]] == list(range(1, 19))
    assert [s for s, _ in read["eval/test_elbo"]] == [6, 12, 18]
    assert status == "completed"


def test_a_toy_optimization_with_two_k_names_k_in_its_tags(tmp_path):
    overrides = ["task.mode=optimize", "task.costs=[square]", "task.k=[1.0,2.0]"]
    run_with("tensorboard", tmp_path, *overrides, "task.optimize.steps=20")
    read, _ = tensorboard_points(tmp_path / "tensorboard")
    steps = list(range(0, 21, 10))
    table = pd.read_csv(tmp_path / "optimize.csv")
    for k in (1.0, 2.0):
        rows = table[table.k == k]
        objective = list(zip(steps, rows.objective, strict=True))
        assert read[f"optimize/k_{k:g}/objective"] == as_float32(objective)


def test_the_config_is_logged_once_as_hyperparameters(tmp_path):
    run_with("mlflow", tmp_path / "run", *TOY, "estimator=reinforce_baseline")
    (found,) = mlflow_runs(tmp_path / "mlruns", "gaussian")
    params = found.data.params
    assert params["task.k"] == "[0.5, 1.0, 2.0]" and params["estimator.baseline"] == "loo"
    assert params["seed"] == "0" and not any(key.startswith("logger") for key in params)
    assert found.info.run_name == "gaussian_reinforce_baseline"
    assert found.data.tags["run_dir"] == str(tmp_path / "run")


def test_logger_none_writes_nothing_more_and_imports_neither_package(tmp_path):
    code = (
        "import sys\n"
        "from benchmarks.experiment import compose_config, run_config\n"
        "from benchmarks.results import RunWriter\n"
        f"run_config(compose_config(sys.argv[1:]), RunWriter({str(tmp_path)!r}))\n"
        "print(sorted({'tensorboard', 'mlflow'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    args = [sys.executable, "-c", code, "task.n_estimates=100", "task.k=[1.0]"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "status.json"]


def test_a_missing_package_is_one_line_naming_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    cfg = compose_config(["logger=mlflow", *TOY])
    with pytest.raises(ConfigError, match=r"^logger=mlflow needs the mlflow package: pip install"):
        run_config(cfg, RunWriter(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_sweep_logs_one_run_per_job(tmp_path, logger):
    store = tmp_path / "mlruns"
    args = ["-m", "estimator=reparam,reinforce", "task.n_estimates=2000", "task.k=[1.0]"]
    args += [f"logger={logger}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = run(*args, *([f"logger.tracking_uri={store}"] if logger == "mlflow" else []))
    assert out.returncode == 0, out.stderr
    for job in ("0", "1"):
        if logger == "tensorboard":
            read, status = tensorboard_points(tmp_path / "sweep" / job / "tensorboard")
            assert_logged_once(read, tmp_path / "sweep" / job, ["metrics"], float32=True)
    if logger == "mlflow":
        runs = mlflow_runs(store, "gaussian")
        assert [r.info.run_name for r in runs] == ["gaussian_reparam", "gaussian_reinforce"]
        assert [r.data.tags["run_dir"] for r in runs] == [
            str(tmp_path / "sweep" / job) for job in ("0", "1")
        ]
        assert {r.data.tags["status"] for r in runs} == {"completed"}


@pytest.mark.slow
def test_ctrl_c_closes_the_logger_with_the_rows_so_far_and_status_interrupted(tmp_path):
    store = tmp_path / "mlruns"
    out = interrupt(
        "task.mode=optimize",
        "task.costs=[square]",
        "task.k=[1.0]",
        "task.optimize.steps=100000000",
        "task.optimize.log_every=1",
        "logger=mlflow",
        f"logger.tracking_uri={store}",
        f"hydra.run.dir={tmp_path / 'run'}",
        started=tmp_path / "run/.hydra/config.yaml",
    )
    assert out.returncode == 130, out.stderr
    assert json.loads((tmp_path / "run/status.json").read_text())["status"] == "interrupted"
    read, status = mlflow_points(store, "gaussian")
    assert_logged_once(read, tmp_path / "run", ["optimize"], float32=False)
    assert status == "interrupted"
    (found,) = mlflow_runs(store, "gaussian")
    assert found.info.status == "KILLED"

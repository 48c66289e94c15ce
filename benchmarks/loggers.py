"""Experiment loggers (``conf/logger/``): the tables a run writes, handed over by its writer
(``RunWriter.table``), as scalars in TensorBoard event files or a local MLflow store.

Nothing is recomputed: every point is a cell of a table, logged once. A table written again (the
VAE's, after every epoch) has only its rows not yet logged sent on. TensorBoard and MLflow are
imported by the logger that uses them, when its run opens at the first table.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks.logger_base import Logger  # conf/logger/none.yaml builds it from here
from benchmarks.results import check_writable
from estimators.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

Point = tuple[str, float, int]
"""A scalar as logged: its tag, its value and its step."""

MLFLOW_STATUS = {"interrupted": "KILLED", "failed": "FAILED"}
"""MLflow's end state of a run per status; completed and diverged runs are FINISHED."""


class TableLogger(Logger):
    """A logger of each table's rows not logged before, as scalars (``points``). Its run opens,
    with the composed config as hyperparameters, at the first rows: a run stopped by bad input
    before it wrote a table leaves nothing in the logger."""

    def __init__(self, run_dir: Path, task: str, run_name: str, config: DictConfig) -> None:
        self.run_dir, self.task, self.run_name, self.config = Path(run_dir), task, run_name, config
        self.logged: dict[str, int] = {}  # rows of each table logged so far
        self.opened = False

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        start, self.logged[name] = self.logged.get(name, 0), len(table)
        if len(table) <= start:
            return
        if not self.opened:
            self.open(hyperparameters(self.config))
            self.opened = True
        self.write(points(name, table, start))

    def close(self, status: str) -> None:
        if self.opened:
            self.end(status)
            self.opened = False

    def open(self, params: dict[str, bool | int | float | str]) -> None:
        """Start the run and log ``params``."""
        raise NotImplementedError

    def write(self, points: list[Point]) -> None:
        raise NotImplementedError

    def end(self, status: str) -> None:
        """Record ``status`` and flush."""
        raise NotImplementedError


class TensorBoard(TableLogger):
    """``logger=tensorboard``: event files in ``log_dir`` (relative to the run folder, so each
    sweep job has its own), the config as HParams and the status as the text ``status``. Scalars
    are stored as float32, the one precision TensorBoard's default (fast) loader shows."""

    def __init__(self, log_dir: str = "tensorboard", **run) -> None:
        super().__init__(**run)
        require("tensorboard", "tensorboard", "tensorboard")
        self.log_dir = self.run_dir / log_dir  # an absolute log_dir stays as it is
        check_writable(self.log_dir, "logger.log_dir")

    def open(self, params: dict[str, bool | int | float | str]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(self.log_dir))
        for summary in hparams(params, {}):
            self.writer.file_writer.add_summary(summary)

    def write(self, points: list[Point]) -> None:
        for tag, value, step in points:
            self.writer.add_scalar(tag, value, step)

    def end(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()


class MLflow(TableLogger):
    """``logger=mlflow``: one MLflow run per run (per sweep job) in the experiment
    ``experiment_name`` (default: the task's name) of the store at ``tracking_uri``, a local
    folder shared by every run; the config as params, the status as the tag ``status``."""

    def __init__(
        self, tracking_uri: str = "results/mlruns", experiment_name: str | None = None, **run
    ) -> None:
        super().__init__(**run)
        require("mlflow", "mlflow-skinny", "mlflow")
        url = urlparse(tracking_uri)
        if url.scheme in ("", "file"):  # a folder: MLflow's file store
            folder = Path(url.path if url.scheme else tracking_uri).resolve()
            check_writable(folder, "logger.tracking_uri")
            tracking_uri = folder.as_uri()
            # MLflow 3 keeps its file store behind this opt-in, in favour of a database.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name or self.task

    def open(self, params: dict[str, bool | int | float | str]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.tracking_uri)
        tags = {"run_dir": str(self.run_dir.resolve())}
        run = self.client.create_run(self.experiment_id(), run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        logged = [Param(key, str(value)) for key, value in params.items()]
        for i in range(0, len(logged), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=logged[i : i + 100])

    def experiment_id(self) -> str:
        """The experiment's id, the experiment made where there is none yet."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name)
        except MlflowException:  # another job of the sweep made it meanwhile
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id

    def write(self, points: list[Point]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value, step in points]
        for i in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def end(self, status: str) -> None:
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FINISHED"))


def require(module: str, package: str, logger: str) -> None:
    """ConfigError saying what to install unless ``module`` can be imported (not importing it)."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"logger={logger} needs the {module} package: pip install {package} "
            "(or pip install 'estibench[loggers]')"
        )


def build_logger(cfg: DictConfig, run_dir: Path, task: str, estimator: str) -> Logger:
    """The logger ``cfg.logger`` names (none where the config has no logger group) for the run
    of ``task`` with ``estimator`` in ``run_dir``."""
    node = OmegaConf.select(cfg, "logger")
    if node is None:
        return Logger()
    make = instantiate(node, _partial_=True)  # the yaml's options; the run's objects come next
    return make(run_dir=run_dir, task=task, run_name=f"{task}_{estimator}", config=cfg)


def hyperparameters(config: DictConfig) -> dict[str, bool | int | float | str]:
    """The composed config less the logger's own options, flat (``task.optimize.lr``), each
    value a number, a boolean or a string (lists and nulls as they print)."""
    tree = OmegaConf.to_container(config, resolve=True)
    tree.pop("logger", None)
    flat: dict[str, bool | int | float | str] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                scalar = isinstance(value, bool | int | float | str)
                flat[f"{prefix}{key}"] = value if scalar else str(value)

    walk(tree, "")
    return flat


def key_columns(table: pd.DataFrame) -> list[str]:
    """The columns that tell a row apart from the table's other rows at its step: the text
    columns that vary (a toy's ``cost`` and ``param``, the probe's ``network`` and ``param``),
    then, where two rows still share those and ``step``, the numeric columns that vary, left to
    right, until no two do (the toy optimization's ``k``)."""
    from pandas.api.types import is_numeric_dtype

    varying = [c for c in table.columns if c != "step" and table[c].nunique(dropna=False) > 1]
    keys = [c for c in varying if not is_numeric_dtype(table[c])]
    if "step" in table.columns:
        numeric = iter([c for c in varying if c not in keys])
        while table.duplicated([*keys, "step"]).any():
            column = next(numeric, None)
            if column is None:
                break
            keys.append(column)
    return keys


def points(name: str, table: pd.DataFrame, start: int) -> list[Point]:
    """The scalars of the rows of ``table`` from row ``start`` on: one per float cell that is not
    empty (NaN) and not an estimator option (a hyperparameter), tagged
    ``NAME/KEY.../COLUMN`` with the row's ``key_columns`` (a number as ``k_1.5``), at the row's
    ``step``, or where the table has none, at the row's number among the rows of its tag
    (a toy's metrics: the index of k in ``task.k``)."""
    from pandas.api.types import is_float_dtype

    keys = key_columns(table)
    if "step" in table.columns:
        steps = table["step"].tolist()
    elif keys:
        steps = table.groupby(keys, sort=False, dropna=False).cumcount().tolist()
    else:
        steps = list(range(len(table)))
    columns = [
        c
        for c in table.columns
        if c not in keys and is_float_dtype(table[c]) and not c.startswith("estimator.")
    ]
    logged = []
    for i in range(start, len(table)):
        row = table.iloc[i]
        prefix = "/".join([name, *(label(k, row[k]) for k in keys)])
        for column in columns:
            value = float(row[column])
            if not math.isnan(value):
                logged.append((tag(f"{prefix}/{column}"), value, int(steps[i])))
    return logged


def label(key: str, value: object) -> str:
    """A key's part of a tag: a text as it is, a number named (``k_1.5``)."""
    return value if isinstance(value, str) else f"{key}_{value:g}"


def tag(text: str) -> str:
    """``text`` with the characters MLflow refuses in a metric name as ``_``."""
    return re.sub(r"[^\w.\- /]", "_", text)

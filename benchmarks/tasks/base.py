"""The task contract, stated once (as ``estimators.base`` states the estimator's).

A task is an objective on which the harness measures estimators. ``conf/task/NAME.yaml`` builds it
with ``hydra.utils.instantiate``: its ``_target_`` names the class, its other keys are the task's
options (``task.KEY`` on the command line), which the class keeps as ``self.cfg``. A task:

- ``validate(estimator, context)``: checks its options, and that the estimator applies, before
  any work; a ``ConfigError`` names the key as the user typed it (``task.KEY=value: ...``);
- ``run(make_estimator, context)``: measures with fresh estimators from the factory and returns a
  ``Result``: its tidy tables by name (each written as ``NAME.csv``) and its final status. A task
  that writes while it runs (checkpoints, per-epoch tables) does so through ``context.writer``
  and keeps ``context.progress`` current, so that an interrupted run's status says where it was;
- declares ``tables`` (the table names its runs write) and ``summary_columns`` (per table, the
  columns the runner prints), and picks the printed rows in ``summary_rows``;
- from the tidy table of all its runs in a folder (``benchmarks.plot``), gives its sections of
  ``summary.md`` (``summary_lines``) and its figures (``figures``): figures come from tables only.

Adding a task is a module or package of its own with such a class (``@register``: its ``name``,
which every run's status records, finds it again), a yaml, tests and a docs page; the runner, the
writer, the sweep callback and the plotting core name no task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks.results import RunWriter, frame
from estimators.base import Estimator
from estimators.errors import ConfigError
from estimators.registry import file_by_name

if TYPE_CHECKING:  # pandas and matplotlib only in annotations: a bad input answers fast
    import pandas as pd
    from matplotlib.figure import Figure

EstimatorFactory = Callable[..., Estimator]
"""Builds a fresh estimator; keyword options (a baseline the task supplies) go to its class."""


@dataclass
class Context:
    """What a run hands its task besides the estimator factory."""

    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    writer: RunWriter | None = None
    """None where nothing is to be written (scripts, tests, notebooks)."""
    config: DictConfig | None = None
    """The whole composed config, for a task that reads another group (the VAE's dataset)."""
    progress: dict = field(default_factory=dict)
    """Where the run is (``step``, ``epoch``), kept current by the task: an interrupt's status."""


Rows = list[dict]
"""A table as its task makes it: one dict per row, the columns in the first row's order."""


@dataclass
class Result:
    """A finished run: its tables' rows by name, and its status with any details (step,
    message). Tasks hand over rows; pandas builds the tables (``tables``) where they are read."""

    rows: dict[str, Rows]
    status: str = "completed"
    details: dict = field(default_factory=dict)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Each table as a DataFrame."""
        return {name: frame(rows) for name, rows in self.rows.items()}


class Task:
    """Base class of every task: subclasses set ``name``, ``tables`` and ``summary_columns`` and
    implement ``validate`` and ``run``; ``summary_lines`` and ``figures`` default to none."""

    name: ClassVar[str] = ""
    tables: ClassVar[tuple[str, ...]] = ()
    summary_columns: ClassVar[dict[str, list[str]]] = {}
    figures_module: ClassVar[str] = ""
    """A module with ``summary_lines(summary)`` and ``figures(summary, style)`` for this task,
    imported when first needed, so that pandas and matplotlib stay off a bad input's path."""

    def __init__(self, **options) -> None:
        self.cfg: DictConfig = OmegaConf.create(options)

    def validate(self, estimator: Estimator, context: Context) -> None:
        """Raise ConfigError naming the first bad key, before any work."""

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        raise NotImplementedError

    def summary_rows(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of table ``name`` that the runner prints (all of them by default)."""
        return table

    @classmethod
    def summary_lines(cls, summary: pd.DataFrame) -> list[str]:
        """Markdown sections of ``summary.md`` from the tidy table of this task's runs (which has
        a ``table`` column naming each row's table and a ``label`` column per estimator): those
        of ``figures_module``, or none."""
        if not cls.figures_module:
            return []
        return importlib.import_module(cls.figures_module).summary_lines(summary)

    @classmethod
    def figures(cls, summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, Figure]]:
        """(file stem, figure) pairs from the same table; ``style`` gives each estimator label
        its colour, marker and dashes, the same in every figure: those of ``figures_module``."""
        if not cls.figures_module:
            return iter(())
        return importlib.import_module(cls.figures_module).figures(summary, style)


REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` findable by its ``name`` (``benchmarks.tasks.lookup``), the
    name a run's status records, so that moving a task's module breaks no committed result."""
    return file_by_name(REGISTRY, cls, "task")


def run_columns(
    estimator: Estimator,
    task: str,
    seed: int,
    device: torch.device | None,
    where: dict | None = None,
    **settings,
) -> dict:
    """The columns that say which run a row comes from, in this order: the estimator's name, its
    options as one string (``options``), the task, ``where`` (what it ran on: a target, a data
    set), the seed, the device (None: no column, for a task that runs on the CPU alone), the
    task's ``settings``, and each option as ``estimator.KEY`` (as typed on the command line)."""
    options = estimator.options()
    return {
        "estimator": estimator.name,
        "options": ",".join(f"{k}={v}" for k, v in options.items()),
        "task": task,
        **(where or {}),
        "seed": seed,
        **({} if device is None else {"device": device.type}),
        **settings,
        **{f"estimator.{k}": v for k, v in options.items()},
    }


def learned_columns(estimator: Estimator) -> dict[str, float]:
    """``learned_eta``, ``learned_temperature``: a learned control variate's values as measured."""
    return {f"learned_{key}": value for key, value in estimator.learned().items()}


def build(cfg: DictConfig) -> Task:
    """The task that ``cfg`` (a ``conf/task/NAME.yaml`` node) describes, by its ``_target_``; a
    ConfigError raised while building it stays one."""
    try:
        return instantiate(cfg)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise


def run_task(task: Task, make_estimator: EstimatorFactory, context: Context) -> Result:
    """Validate ``task`` against a fresh estimator, then run it from ``context.seed``: the one
    path of the command line, the scripts and the tests."""
    task.validate(make_estimator(), context)
    torch.manual_seed(context.seed)
    return task.run(make_estimator, context)


@dataclass(frozen=True)
class Style:
    """One colour, marker and dash pattern per estimator label, shared by every figure of a
    folder, so that an estimator looks the same in all of them."""

    colors: dict[str, tuple]
    markers: dict[str, str]
    dashes: dict[str, tuple | str]
    """seaborn's form: "" for a solid line, else (on, off, ...) lengths."""

    def linestyle(self, label: str) -> str | tuple:
        """The same dash pattern in matplotlib's form."""
        dashes = self.dashes[label]
        return (0, dashes) if dashes else "-"

    def seaborn(self) -> dict:
        """seaborn's keywords for a line per estimator (the ``label`` column) in this style."""
        return {"hue": "label", "palette": self.colors, "style": "label", "dashes": self.dashes}

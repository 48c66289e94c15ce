"""The task contract, stated once (as ``estimators.base`` states the estimator's).

A task is an objective on which the harness measures estimators. ``conf/task/NAME.yaml`` builds it
with ``hydra.utils.instantiate``: its ``_target_`` names the class, its other keys are the task's
options (``task.KEY`` on the command line), which the class keeps as ``self.cfg``. A task:

- ``validate(estimator)``: checks its options, and that the estimator applies, before any work;
  a ``ConfigError`` names the key as the user typed it (``task.KEY=value: ...``);
- ``run(make_estimator, context)``: measures with fresh estimators from the factory and returns a
  ``Result``: its tidy tables by name (each written as ``NAME.csv``) and its final status. A task
  that writes while it runs (checkpoints, per-epoch tables) does so through ``context.writer``
  and keeps ``context.progress`` current, so that an interrupted run's status says where it was;
- declares ``tables`` (the table names its runs write) and ``summary_columns`` (per table, the
  columns the runner prints), and picks the printed rows in ``summary_rows``;
- from the tidy table of all its runs in a folder (``benchmarks.plot``), gives its sections of
  ``summary.md`` (``summary_lines``) and its figures (``figures``): figures come from tables only.

Adding a task is a module or package of its own with such a class, a yaml, tests and a docs page;
the runner, the writer, the sweep callback and the plotting core name no task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.results import RunWriter
from estimators.base import Estimator

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EstimatorFactory = Callable[[], Estimator]


@dataclass
class Context:
    """What a run hands its task besides the estimator factory."""

    seed: int
    device: torch.device
    writer: RunWriter
    config: DictConfig
    """The whole composed config, for a task that reads another group (the VAE's dataset)."""
    progress: dict = field(default_factory=dict)
    """Where the run is (``step``, ``epoch``), kept current by the task: an interrupt's status."""


@dataclass
class Result:
    """A finished run: its tables by name, and its status with any details (step, message)."""

    tables: dict[str, pd.DataFrame]
    status: str = "completed"
    details: dict = field(default_factory=dict)


class Task:
    """Base class of every task: subclasses set ``name``, ``tables`` and ``summary_columns`` and
    implement ``validate`` and ``run``; ``summary_lines`` and ``figures`` default to none."""

    name: ClassVar[str] = ""
    tables: ClassVar[tuple[str, ...]] = ()
    summary_columns: ClassVar[dict[str, list[str]]] = {}

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
        a ``table`` column naming each row's table and a ``label`` column per estimator)."""
        return []

    @classmethod
    def figures(cls, summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, Figure]]:
        """(file stem, figure) pairs from the same table; ``style`` gives each estimator label
        its colour and marker, the same in every figure."""
        return iter(())


@dataclass(frozen=True)
class Style:
    """One colour and one marker per estimator label, shared by every figure of a folder."""

    colors: dict[str, tuple]
    markers: dict[str, str]

"""The logger contract, the two methods the run's writer calls: a module of its own, so that the
writer (``benchmarks.results``) imports it and not the loggers, which import the writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # only annotations: a bad input answers without pandas


class Logger:
    """``logger=none``: the tables stay in their CSVs alone. The base of the loggers, whose two
    methods the run's writer calls."""

    def __init__(self, **run) -> None:
        """Takes (and here ignores) what every logger is built with: see ``TableLogger``."""

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        """Table ``name`` as just written, whole (the rows written before included)."""

    def close(self, status: str) -> None:
        """The run's end, with its last status (completed, diverged, interrupted or failed)."""

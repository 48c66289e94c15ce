"""Writing results: files that appear whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import torch

from benchmarks.logger_base import Logger
from estimators.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd  # only annotations: a bad input answers without pandas


def new_file_mode() -> int:
    """The permissions ``open`` gives a new file under the process's umask (0o644 under 022);
    ``mkstemp`` makes its files readable by their owner alone."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it onto ``path``, with the
    permissions an ordinary new file would have."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def frame(rows: list[dict]) -> pd.DataFrame:
    """The table of ``rows`` (dicts of one row each), pandas imported only here and when used."""
    import pandas as pd

    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV at ``path`` atomically."""
    return atomic_write(path, lambda handle: table.to_csv(handle, index=False))


def write_json(data: dict, path: Path) -> Path:
    """Write ``data`` as JSON at ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(json.dumps(data, indent=2).encode()))


def save_checkpoint(state: dict, path: Path) -> Path:
    """``torch.save`` at ``path`` atomically, so a kill never leaves a torn checkpoint."""
    return atomic_write(path, lambda handle: torch.save(state, handle))


def markdown_table(table: pd.DataFrame, digits: int | None = 2) -> str:
    """``table`` as a GitHub-flavoured markdown table, floats rounded to ``digits`` places
    (``None``: four significant digits, for values spanning many orders of magnitude)."""

    def cell(value) -> str:
        if isinstance(value, float):
            if value != value:
                return ""
            return f"{value:.4g}" if digits is None else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


class RunWriter:
    """The one writer of a run's files, handed to the task: each file appears whole or not at all
    (atomic writes), and ``finish`` removes what an earlier run left in a reused folder that this
    run did not rewrite (another mode's table, an old status). Each table it writes goes on to
    the run's logger (``benchmarks.loggers``), which ``finish`` closes with the last status."""

    def __init__(self, run_dir: Path, overrides: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.task: str | None = None  # the task's registered name, which every status records
        self.task_class: str | None = None  # its import path: for a task plot has not imported
        self.overrides = overrides  # the command line's, which a status records where given
        self.earlier = output_times(self.run_dir)
        self.details: dict = {}  # the fields of the last status written, which an interrupt keeps
        self.last_status: str | None = None
        self.logger: Logger | None = None  # set by run_config from the config's logger group

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def table(self, name: str, rows: list[dict]) -> Path:
        """``NAME.csv``, the tidy table of ``rows``, then its new rows to the logger."""
        table = frame(rows)
        path = write_table(table, self.path(f"{name}.csv"))
        if self.logger is not None:
            self.logger.log_table(name, table)
        return path

    def json(self, name: str, data: dict) -> Path:
        """``NAME.json``."""
        return write_json(data, self.path(f"{name}.json"))

    def status(self, status: str, **fields) -> Path:
        """``status.json``: completed, running, diverged, interrupted or failed, with the task's
        name and class, the run's overrides (which ``benchmarks.plot`` reads) and details."""
        self.details, self.last_status = fields, status
        head = {"status": status, "task": self.task, "task_class": self.task_class}
        if self.overrides is not None:
            head["overrides"] = self.overrides
        return self.json("status", {**head, **fields})

    def checkpoint(self, state: dict) -> Path:
        """``checkpoint.pt``, for resuming."""
        return save_checkpoint(state, self.path("checkpoint.pt"))

    def load_checkpoint(self, device: torch.device) -> dict | None:
        """What ``checkpoint`` saved, its tensors on ``device``; None where there is none."""
        path = self.path("checkpoint.pt")
        if not path.exists():
            return None
        return torch.load(path, map_location=device, weights_only=False)

    def finish(self) -> None:
        """Remove the earlier run's tables and status that this run did not rewrite, and close the
        logger (flushing it) with the last status."""
        remove_unchanged(self.earlier)
        if self.logger is not None:
            self.logger.close(self.last_status or "completed")


def check_writable(folder: Path, key: str) -> None:
    """ConfigError naming ``key`` unless ``folder`` can be made and written, tried with a
    temporary folder made and removed in its nearest existing parent: before Hydra makes the
    folder, whose failure would be a traceback, and leaving nothing behind."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # a path under a regular file does not exist either
    if not parent.is_dir():
        raise ConfigError(f"{key}={folder}: cannot make the folder, {parent} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent))
    except OSError as error:
        raise ConfigError(
            f"{key}={folder}: cannot write into {parent} ({error.strerror})"
        ) from None


def output_times(run_dir: Path) -> dict[Path, int]:
    """A run folder's tables and status as they are now, with modification times in ns."""
    paths = [*Path(run_dir).glob("*.csv"), Path(run_dir) / "status.json"]
    return {path: path.stat().st_mtime_ns for path in paths if path.exists()}


def remove_unchanged(before: dict[Path, int]) -> None:
    """Delete the files of ``before`` that are still as they were: an earlier run's outputs in a
    folder this run reused (another mode's table, an old status), which are not this run's."""
    for path, mtime in before.items():
        if path.exists() and path.stat().st_mtime_ns == mtime:
            path.unlink()

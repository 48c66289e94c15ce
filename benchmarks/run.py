"""The Hydra entry point: ``python -m benchmarks.run estimator=NAME task=NAME [key=value ...]``.

It checks the command line, hands the composed config to ``benchmarks.experiment.run_config``
(which builds the estimator and the task, runs the task and writes its tables into the run
directory) and prints a summary. Bad input stops with one line on stderr, exit code 2, and nothing
left on disk; Ctrl-C stops with one line, status ``interrupted`` and exit code 130.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from benchmarks.allocator import keep_freed_memory
from benchmarks.callbacks import end_interrupted_sweep
from benchmarks.config import CONF_DIR, store_estimator_configs
from benchmarks.experiment import run_config
from benchmarks.results import RunWriter, check_writable
from benchmarks.tasks.base import Task
from estimators.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
GROUPS = ("dataset", "task", "estimator", "logger")
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def summary(task: Task, name: str, table: pd.DataFrame) -> str | None:
    """A readable text table of a run's headline numbers, or None for a table not summarized."""
    columns = task.summary_columns.get(name)
    if columns is None or table.empty:
        return None
    shown = task.summary_rows(name, table)
    shown = shown[[c for c in columns if c in shown.columns]]
    if "options" in shown and not shown["options"].any():
        shown = shown.drop(columns="options")
    if "seed" in shown and shown["seed"].nunique() == 1:  # shown where a run holds several
        shown = shown.drop(columns="seed")
    shown = shown.dropna(axis="columns", how="all")
    return shown.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")


def discard_hydra_files(run_dir: Path) -> None:
    """Remove what Hydra wrote for a job that stopped on bad input, and the folder and its parent
    (the date folder Hydra made) where then empty."""
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()
        run_dir.parent.rmdir()


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that a job has reported (its line printed, its status written)."""


def log_to_file_only(message: str) -> None:
    """Log ``message`` and the exception being handled into the run's log file only: a run that
    crashes prints one line on stderr, which points there."""
    root = logging.getLogger()
    consoles = [h for h in root.handlers if not isinstance(h, logging.FileHandler)]
    for handler in consoles:
        root.removeHandler(handler)
    try:
        log.exception(message)
    finally:
        for handler in consoles:
            root.addHandler(handler)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    # The writer notes what an earlier run in this folder left, if anything.
    writer = RunWriter(run_dir, overrides=list(hydra_cfg.overrides.task))
    progress: dict = {}
    try:
        task, result = run_config(cfg, writer, progress=progress)
    except KeyboardInterrupt:
        writer.status("interrupted", **{**writer.details, **progress})
        writer.finish()
        where = ", ".join(f"{key}={value}" for key, value in progress.items()) or "the start"
        tables = ", ".join(sorted(path.name for path in run_dir.glob("*.csv")))
        kept = f"{tables} so far kept in" if tables else "no table written; status.json in"
        print(f"interrupted at {where}; {kept} {run_dir}", file=sys.stderr)
        raise Interrupted from None
    except ConfigError as error:
        if in_sweep:  # the sweep goes on; the plot callback names this job and its error
            writer.status("failed", error=str(error))
            writer.finish()
            print(f"error: {error}", file=sys.stderr)
            return
        discard_hydra_files(run_dir)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        writer.status("failed", error=reason)
        writer.finish()
        if in_sweep:
            log.exception("job %s failed; the sweep goes on", hydra_cfg.job.num)
            return
        log_file = run_dir / f"{hydra_cfg.job.name}.log"
        log_to_file_only("the run failed")
        choices = hydra_cfg.runtime.choices
        print(
            f"error: task={choices.task} with estimator '{choices.estimator}' failed: {reason} "
            f"(traceback in {log_file})",
            file=sys.stderr,
        )
        sys.exit(1)
    for name, table in result.tables.items():
        text = summary(task, name, table)
        if text:
            print(f"{name}.csv:\n{text}\n")
    print(f"wrote {', '.join(f'{name}.csv' for name in result.tables)} into {run_dir}")


def override_sets(args: list[str]) -> list[list[str]]:
    """The override lists whose composition checks every key and every group option of a command
    line: one per option of each swept group (the sum, not the product, of the sweeps' sizes),
    other sweeps at their first value."""
    parser = OverridesParser.create()
    fixed, swept = [], []
    for text in args:
        if text in ("-m", "--multirun"):
            continue
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException as error:
            lines = error.message.splitlines()
            reason = lines[1] if lines[0].startswith("Error parsing override") else lines[0]
            raise ConfigError(
                f"{text!r} is not a key=value override ({reason}); see {GRAMMAR}"
            ) from None
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # a glob sweep needs Hydra's config loader: Hydra checks it
            return []
        texts = [f"{override.get_key_element()}={value}" for value in values]
        if override.key_or_group in GROUPS:
            swept.append(texts)
        else:
            fixed.append(texts[0])
    first = [*fixed, *(texts[0] for texts in swept)]
    sets = [first]
    for i, texts in enumerate(swept):
        sets += [
            [*first[: len(fixed) + i], text, *first[len(fixed) + i + 1 :]] for text in texts[1:]
        ]
    return sets


def no_such_key(bad: str, key: str, overrides: list[str]) -> ConfigError:
    """One line for an override of a key the config lacks, listing the keys beside it under the
    command line's group choices (and Hydra's settings, which may add a search path)."""
    parent = key.rpartition(".")[0]
    choices = [o for o in overrides if o.split("=")[0] in GROUPS or o[:5] == "hydra"]
    try:
        cfg = compose("config", [o for o in choices if o != bad], return_hydra_config=True)
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:
        node = None  # a second bad key among Hydra's settings
    if not isinstance(node, DictConfig):
        return ConfigError(f"{bad}: no such key")
    keys = ", ".join(k for k in node if k not in ("_target_", "hydra"))
    where = parent or "the config"
    if parent in GROUPS:
        where = f"{parent}={cfg.hydra.runtime.choices[parent]}"
    return ConfigError(f"{bad}: no such key; the keys of {where} are {keys}")


def check_overrides(args: list[str]) -> None:
    """Compose the config for the command line before Hydra does, so that a misspelt key or group
    option stops with one line naming it and what is accepted instead of Hydra's multi-line
    report; anything else is left to Hydra."""
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in args):
        return  # --cfg, --help, --config-name ...: Hydra's own business
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sets = override_sets(args)
        composed = []
        for overrides in sets:
            try:
                composed.append(compose("config", overrides=overrides, return_hydra_config=True))
            except MissingConfigException as error:
                group, _, value = (error.missing_cfg_file or "").partition("/")
                if group not in GROUPS or not error.options:
                    return
                raise ConfigError(
                    f"{group}={value!r}: accepted {group}s are {', '.join(error.options)}"
                ) from None
            except ConfigCompositionException as error:
                key = getattr(error.__cause__, "full_key", None)
                bad = [o for o in overrides if o.lstrip("+~").split("=")[0] == key]
                if not bad:
                    return
                raise no_such_key(bad[0], key, overrides) from None
            except Exception:
                return
        if composed:
            key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(args) else "hydra.run.dir"
            try:
                folder = OmegaConf.select(composed[0], key)
            except Exception:
                return  # a folder that only Hydra's own resolution can name: Hydra checks it
            check_writable(Path(folder), key)


def entry() -> None:
    """Check the command line, then run it: bad input and Ctrl-C end in one line, a Ctrl-C in
    a sweep after the summary of the jobs that finished."""
    try:
        store_estimator_configs()
        check_overrides(sys.argv[1:])
        main()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        if not isinstance(interrupt, Interrupted):
            print("interrupted", file=sys.stderr)
        end_interrupted_sweep()
        sys.exit(130)


if __name__ == "__main__":
    entry()

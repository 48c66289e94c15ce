"""The Hydra entry point: ``python -m benchmarks.run estimator=NAME task=NAME [key=value ...]``.

It builds the estimator from ``conf/estimator/NAME.yaml``, runs the task, writes the task's tidy
tables into the run directory and prints a summary. Bad input stops with one line on stderr,
exit code 2, and nothing left on disk.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from pathlib import Path

import hydra
import pandas as pd
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

from benchmarks.config import CONF_DIR
from benchmarks.experiment import run_config
from benchmarks.results import RunWriter
from benchmarks.tasks.base import Task
from estimators.base import ConfigError

log = logging.getLogger(__name__)
GROUPS = ("dataset", "task", "estimator")
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def summary(task: Task, name: str, table: pd.DataFrame) -> str | None:
    """A readable text table of a run's headline numbers, or None for a table not summarized."""
    columns = task.summary_columns.get(name)
    if columns is None or table.empty:
        return None
    shown = task.summary_rows(name, table)
    shown = shown[[c for c in columns if c in shown.columns]]
    if not shown["options"].any():
        shown = shown.drop(columns="options")
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


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    # The writer notes what an earlier run in this folder left, if anything.
    writer = RunWriter(run_dir, task=OmegaConf.select(cfg, "task._target_"))
    try:
        task, result = run_config(cfg, writer)
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
        if not in_sweep:
            raise
        writer.status("failed", error=f"{type(error).__name__}: {error}")
        writer.finish()
        log.exception("job %s failed; the sweep goes on", hydra_cfg.job.num)
        return
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
        for overrides in override_sets(args):
            try:
                compose("config", overrides=overrides)
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


if __name__ == "__main__":
    try:
        check_overrides(sys.argv[1:])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()

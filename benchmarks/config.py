"""Where the Hydra configs live: the one helper every script, test and the entry point use.

In a source checkout (plain or ``pip install -e .``) they are the repository's top-level
``conf/``; an installed wheel ships the same files as ``benchmarks/conf/`` (``setup.py`` maps the
one onto the other), so ``python -m benchmarks.run`` works from any folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from hydra.core.config_store import ConfigStore

import estimators

_HERE = Path(__file__).resolve().parent


def _find() -> Path:
    """The folder holding ``config.yaml`` and the config groups (``task/``, ``estimator/``, ...)."""
    for candidate in (_HERE / "conf", _HERE.parent / "conf"):  # installed wheel, then checkout
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml beside or inside {_HERE}")


CONF_DIR = _find()
"""The folder holding ``config.yaml`` and the config groups."""


def store_estimator_configs() -> None:
    """Give every registered estimator without a ``conf/estimator/NAME.yaml`` (an installed one)
    its config in Hydra's ConfigStore, ``estimators.build`` with its name and default options, so
    that ``estimator=NAME`` needs no yaml. Called before each composition. A yaml of the same
    name (a package's, on ``hydra.searchpath``) wins: Hydra merges it over the node, with a
    deprecation warning that says so and that this silences."""
    warnings.filterwarnings("ignore", r"\s*'estimator/\w+' is validated against ConfigStore")
    store = ConfigStore.instance()
    for name, cls in estimators.REGISTRY.items():
        if not (CONF_DIR / "estimator" / f"{name}.yaml").is_file():
            store.store(group="estimator", name=name, node=estimator_node(name, cls))


def estimator_node(name: str, cls: type) -> dict:
    """``{_target_: estimators.build, name: NAME, **options}``, the options those of a
    default-constructed instance that a yaml can hold (none where the constructor needs some)."""
    try:
        options = cls().options()
    except Exception:
        options = {}
    plain = {k: v for k, v in options.items() if isinstance(v, bool | int | float | str | None)}
    return {"_target_": "estimators.build", "name": name, **plain}

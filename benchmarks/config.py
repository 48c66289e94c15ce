"""Where the Hydra configs live: the one helper every script, test and the entry point use.

In a source checkout (plain or ``pip install -e .``) they are the repository's top-level
``conf/``; an installed wheel ships the same files as ``benchmarks/conf/`` (``setup.py`` maps the
one onto the other), so ``python -m benchmarks.run`` works from any folder.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _find() -> Path:
    """The folder holding ``config.yaml`` and the config groups (``task/``, ``estimator/``, ...)."""
    for candidate in (_HERE / "conf", _HERE.parent / "conf"):  # installed wheel, then checkout
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml beside or inside {_HERE}")


CONF_DIR = _find()
"""The folder holding ``config.yaml`` and the config groups."""

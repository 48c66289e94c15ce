"""Tests that need a package of an optional extra (``pip install -e ".[loggers]"``): marked
``extra`` and skipped, with the reason, where the package is absent, so the README's own install
runs the default suite green; ``.ci/run`` installs the extras and runs ``-m extra`` again."""

from __future__ import annotations

import importlib.util

import pytest

EXTRA_OF = {"tensorboard": "loggers", "mlflow": "loggers"}
"""The extra of pyproject.toml that installs each module."""


def needs(*modules: str) -> list[pytest.MarkDecorator]:
    """The marks of a test that imports ``modules``: ``extra``, and a skip where one is absent."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    extras = sorted({EXTRA_OF[m] for m in modules})
    reason = f"needs {', '.join(missing)}: pip install -e '.[{','.join(extras)}]'"
    return [pytest.mark.extra, pytest.mark.skipif(bool(missing), reason=reason)]

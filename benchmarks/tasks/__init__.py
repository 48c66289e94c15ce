"""The tasks, found by name (the contract is ``benchmarks.tasks.base``).

A task class registers itself with ``@register`` under its ``name``, which every run's status
records. ``lookup(name)`` finds it, having imported every module and package of this folder, so a
built-in task needs no list kept by hand; a run never looks a task up (its config's ``_target_``
builds it), so those imports stay off a run's path.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from benchmarks.tasks.base import REGISTRY, Task


@functools.cache
def load_builtin() -> None:
    """Import every module and package of this folder, so that each built-in task registers."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    """The registered task names, sorted: every built-in task's and any other imported."""
    load_builtin()
    return sorted(REGISTRY)


def lookup(name: str) -> type[Task] | None:
    """The task class registered as ``name``, or None where no task has that name."""
    load_builtin()
    return REGISTRY.get(name)


__all__ = ["load_builtin", "lookup", "names"]

"""Monte Carlo gradient estimators behind one contract (see ``estimators.base``).

Every module in this package is imported here, so an estimator registers itself by being a file
in this folder whose class carries ``@register``; ``build(name, **options)`` then constructs it.
An installed package adds its own through entry points in the group ``estibench.estimators``,
each naming a module whose import registers them or an ``Estimator`` class.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil

from estimators.base import REGISTRY, Estimator, register, score_surrogate
from estimators.errors import ConfigError

ENTRY_POINTS = "estibench.estimators"
log = logging.getLogger(__name__)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def load_installed() -> None:
    """Register the estimators of installed packages (entry points in ``ENTRY_POINTS``). One
    that does not load, or whose name another estimator has, is left out with one log line
    naming both; the others load."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        try:
            loaded = entry.load()
            if isinstance(loaded, type) and issubclass(loaded, Estimator):
                register(loaded)
        except Exception as error:
            log.warning(
                "estimators from %s (entry point %s = %s) left out: %s",
                entry.dist.name if entry.dist else "an installed package",
                entry.name,
                entry.value,
                error,
            )


load_installed()


def names() -> list[str]:
    """The registered estimator names, sorted."""
    return sorted(REGISTRY)


def build(name: str, **options) -> Estimator:
    """Construct the estimator registered as ``name`` with its ``options``."""
    if name not in REGISTRY:
        raise ConfigError(f"estimator={name!r} is unknown; known estimators: {', '.join(names())}")
    return REGISTRY[name](**options)


__all__ = ["ConfigError", "Estimator", "build", "names", "register", "score_surrogate"]

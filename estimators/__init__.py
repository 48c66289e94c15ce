"""Monte Carlo gradient estimators behind one contract (see ``estimators.base``).

Every module in this package is imported here, so an estimator registers itself by being a file
in this folder whose class carries ``@register``; ``build(name, **options)`` then constructs it.
"""

from __future__ import annotations

import importlib
import pkgutil

from estimators.base import REGISTRY, ConfigError, Estimator, register, score_surrogate

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def names() -> list[str]:
    """The registered estimator names, sorted."""
    return sorted(REGISTRY)


def build(name: str, **options) -> Estimator:
    """Construct the estimator registered as ``name`` with its ``options``."""
    if name not in REGISTRY:
        raise ConfigError(f"estimator={name!r} is unknown; known estimators: {', '.join(names())}")
    return REGISTRY[name](**options)


__all__ = ["ConfigError", "Estimator", "build", "names", "register", "score_surrogate"]

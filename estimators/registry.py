"""Classes filed by their ``name``: the one rule of estimators' and tasks' registries."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)


def file_by_name(registry: dict[str, T], cls: T, kind: str) -> T:
    """Put ``cls`` into ``registry`` under its ``name`` and return it; a TypeError for a class
    without a name or for a name another class has taken (``kind``, "estimator" or "task", names
    them in the message). Filing the same class again does no harm."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a non-empty class attribute `name`")
    taken = registry.get(cls.name)
    if taken is not None and taken is not cls:
        raise TypeError(
            f"{kind} name '{cls.name}' of {cls.__module__}.{cls.__qualname__} is taken by "
            f"{taken.__module__}.{taken.__qualname__}"
        )
    registry[cls.name] = cls
    return cls

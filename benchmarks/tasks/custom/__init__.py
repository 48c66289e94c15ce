"""Your own objective as a task: ``task`` measures any objective that a function returns (its
parameters, distribution and f), ``figures`` draws its runs."""

from benchmarks.tasks.custom.task import CustomTask

__all__ = ["CustomTask"]

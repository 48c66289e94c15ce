"""Bayesian logistic regression as in Mohamed et al. (2020): ``task`` trains it with the
estimator, ``figures`` draws its runs."""

from benchmarks.tasks.blr.task import BLRTask

__all__ = ["BLRTask"]

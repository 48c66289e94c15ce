"""Rainforth et al.'s (2018) Gaussian latent variable model: ``task`` measures each estimator's
gradient SNR against K, ``figures`` draws it."""

from benchmarks.tasks.gaussian_lvm.task import GaussianLVMTask

__all__ = ["GaussianLVMTask"]

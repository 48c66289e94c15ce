"""The VAE task's options: the settings that default by latent family and dataset, and the checks
of every key (and of the estimator against the latent family) before any work."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.config import CONF_DIR
from benchmarks.streams import MISSING
from benchmarks.tasks.vae.models import (
    ARCHS,
    LATENTS,
    encoder_size,
    estimators_for,
    objective_estimators,
    posterior,
)
from estimators.base import Estimator, ObjectiveOnly
from estimators.baselines import SUPPLIED
from estimators.errors import ConfigError, require_int
from estimators.objectives import OBJECTIVES, Objective

# Each acts elementwise on its parameters, which training seeds side by side (parameters stacked
# along a seed axis, task.parallel_seeds) needs: one that takes norms over a whole tensor (LAMB,
# LARS, a finite gradient clip) would mix the seeds.
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
DEFAULT_K = 5  # importance samples on the objective path where task.num_samples is null


# The settings that default by latent family and dataset (null in the yaml): the Gaussian latent
# gets the canonical example's on every dataset; discrete latents the DisARM paper's setup on 28x28
# images (200 bits, or 20 variables of 10 categories as in Jang et al. 2017; two hidden layers of
# 200; Adam 1e-4; batch 50) and on the 8x8 digits a smaller code (32 bits, 8 variables) with a
# larger step (3e-3), which trained best in short runs of a few hundred steps.
SETTINGS = ("arch", "hidden", "latent_dim", "lr", "batch_size")
DEFAULTS = {
    ("gaussian", None): ("mlp", 400, 20, 1e-3, 128),
    ("bernoulli", None): ("nonlinear", 200, 200, 1e-4, 50),
    ("bernoulli", "digits"): ("nonlinear", 200, 32, 3e-3, 50),
    ("categorical", None): ("nonlinear", 200, 20, 1e-4, 50),
    ("categorical", "digits"): ("nonlinear", 200, 8, 3e-3, 50),
}


def resolve(task: DictConfig, dataset: str) -> dict:
    """The task's model and optimizer settings with nulls filled in from DEFAULTS (model.json)."""
    defaults = DEFAULTS.get((task.latent, dataset), DEFAULTS[task.latent, None])
    settings = {
        key: default if task[key] is None else task[key]
        for key, default in zip(SETTINGS, defaults, strict=True)
    }
    categories = task.categories if task.latent == "categorical" else None
    return {"latent": task.latent, **settings, "categories": categories}


def validate(task: DictConfig, dataset: str, estimator: Estimator) -> None:
    """Raise ConfigError with one line naming the first bad task key, before any work."""
    if task.latent not in LATENTS:
        hint = " (the latent size is task.latent_dim)" if isinstance(task.latent, int) else ""
        raise ConfigError(f"task.latent={task.latent!r}: accepted are {', '.join(LATENTS)}{hint}")
    if task.arch is not None and task.arch not in ARCHS:
        raise ConfigError(
            f"task.arch={task.arch!r}: accepted are {', '.join(ARCHS)}, or null (by latent family)"
        )
    if task.latent != "gaussian" and dataset == "linear_gaussian":
        raise ConfigError(
            f"task.latent={task.latent!r}: dataset=linear_gaussian needs task.latent=gaussian "
            "(its exact ELBO is for a Gaussian latent)"
        )
    for key in ("epochs", "log_every", "eval_batch_size"):
        require_int(task[key], f"task.{key}")
    for key in ("hidden", "latent_dim", "batch_size"):
        require_int(task[key], f"task.{key}", nullable=True)
    require_int(task.categories, "task.categories", minimum=2)
    for key in ("grad_var_every", "grad_var_samples", "iwae_k", "max_steps"):
        require_int(task[key], f"task.{key}", minimum=0, nullable=True)
    budget = task.max_seconds
    if budget is not None and not (isinstance(budget, int | float) and budget > 0):
        raise ConfigError(f"task.max_seconds={budget!r}: must be a positive number or null")
    if task.grad_var_samples is not None and 0 < task.grad_var_samples < 2:
        raise ConfigError(f"task.grad_var_samples={task.grad_var_samples}: needs >= 2 estimates")
    if task.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"task.optimizer={task.optimizer!r}: accepted are {', '.join(OPTIMIZERS)}"
        )
    lr = task.lr
    if lr is not None and not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"task.lr={lr!r}: must be a positive number or null")
    if task.objective not in OBJECTIVES:
        raise ConfigError(
            f"task.objective={task.objective!r}: accepted are {', '.join(OBJECTIVES)}"
        )
    check_compile(task.compile, estimator)
    check_parallel_seeds(task.parallel_seeds, task.compile, estimator)
    objective = training_objective(task, estimator)
    if objective is not None:
        check_objective(estimator, task, objective)
    elif task.num_samples is not None:
        estimator.check_num_samples(task.num_samples, "task.num_samples")


def check_compile(value: object, estimator: Estimator) -> None:
    """``task.compile`` is a boolean, and true only for an estimator whose ``backward`` is the
    plain ``loss.backward()``: one that trains its own parameters there takes gradients of
    gradients through the step, which a compiled step does not give."""
    if not isinstance(value, bool):
        raise ConfigError(f"task.compile={value!r}: must be true or false")
    if value and estimator.trainable:
        raise ConfigError(
            f"task.compile=true: estimator '{estimator.name}' trains its own control variate in "
            "its backward (gradients of gradients), which a compiled step does not serve; "
            "run it with task.compile=false"
        )


def check_parallel_seeds(value: object, compile: bool, estimator: Estimator) -> None:
    """``task.parallel_seeds`` is an integer >= 1, and above 1 only for an estimator that keeps
    nothing between steps (the seeds share one estimator object) and without ``task.compile``."""
    require_int(value, "task.parallel_seeds")
    if value == 1:
        return
    if MISSING:
        raise ConfigError(f"task.parallel_seeds={value}: {MISSING}; upgrade torch")
    supplied = estimator.options().get("baseline") == SUPPLIED
    if estimator.trainable or estimator.state_dict() or supplied:
        raise ConfigError(
            f"task.parallel_seeds={value}: estimator '{estimator.name}'"
            f"{estimator.describe_options()} keeps state between steps (a moving average, a "
            "learned baseline or control variate), which the seeds would share; run its seeds "
            "apart (seed=0,1,... with --multirun)"
        )
    if not estimator.vmappable:
        raise ConfigError(
            f"task.parallel_seeds={value}: estimator '{estimator.name}' cannot run under "
            "torch.func.vmap, which trains the seeds as one model; run its seeds apart (seed=0,1,"
            "... with --multirun)"
        )
    if compile:
        raise ConfigError(
            f"task.parallel_seeds={value}: not with task.compile=true (the seeds' draws are made "
            "one seed at a time, outside the compiled graph); set one of them back"
        )


def training_objective(task: DictConfig, estimator: Estimator) -> Objective | None:
    """The objective of the multi-sample path, K = ``task.num_samples`` (null: DEFAULT_K); None
    for the plain ELBO path (``objective=elbo`` with an estimator of E[f]), kept as it was."""
    if task.objective == "elbo" and not isinstance(estimator, ObjectiveOnly):
        return None
    return Objective(task.objective, DEFAULT_K if task.num_samples is None else task.num_samples)


def check_objective(estimator: Estimator, task: DictConfig, objective: Objective) -> None:
    """One line if the estimator does not serve the objective for this latent family (naming
    those that do), takes too few importance samples, or has an option the path refuses."""
    if objective.name not in estimator.objectives:
        serving = ", ".join(objective_estimators(objective.name, task.latent))
        its = f" (it serves {', '.join(estimator.objectives)})" if estimator.objectives else ""
        raise ConfigError(
            f"task.objective={objective.name}: estimator '{estimator.name}' does not estimate "
            f"it{its}; estimators that do with task.latent={task.latent}: {serving}"
        )
    h = torch.zeros(1, encoder_size(task.latent, 1, task.categories))
    q = posterior(h, task.latent, task.categories)
    estimator.check_objective(q, objective, estimator.min_samples)


def check_estimator(estimator: Estimator, task: DictConfig, num_samples: int) -> None:
    """Stop with the contract's one line if the estimator does not apply to this latent family,
    checked on q built from a dummy encoder output before any work."""
    h = torch.zeros(1, encoder_size(task.latent, task.latent_dim, task.categories))
    estimator.check(posterior(h, task.latent, task.categories), num_samples)


COMPARED = {
    "reparam": ["estimator=reparam"],
    "reinforce": ["estimator=reinforce"],
    "reinforce_baseline (loo, 2 draws)": ["estimator=reinforce_baseline"],
    "reinforce_baseline (ema)": ["estimator=reinforce_baseline", "estimator.baseline=ema"],
    "nvil (learned baseline)": ["estimator=nvil"],
}
"""The estimators the Gaussian-latent VAE comparisons train (quality, epoch time), as overrides."""


def compared(latent: str) -> dict[str, list[str]]:
    """The estimators a VAE comparison on digits trains for a latent family, as overrides: for a
    discrete one, the leave-one-out baseline first (it sets the time budget), then every other
    registered estimator that applies at digits' latent size, then nvil."""
    if latent == "gaussian":
        return COMPARED
    size = DEFAULTS[latent, "digits"][SETTINGS.index("latent_dim")]
    categories = OmegaConf.load(CONF_DIR / "task" / "vae.yaml").categories  # the task's default
    names = [n for n in estimators_for(latent, size, categories) if n != "reinforce_baseline"]
    return {
        "reinforce_baseline (loo)": ["estimator=reinforce_baseline"],
        **{name: [f"estimator={name}"] for name in names},
        "nvil (learned baseline)": ["estimator=nvil"],
    }

"""The estimator contract, stated once.

An estimator is called as ``est(dist, f, num_samples)``:

- ``dist`` is a ``torch.distributions.Distribution`` whose parameters may require grad;
- ``f`` maps samples of shape ``[num_samples, *batch_shape, *event_shape]`` to values of shape
  ``[num_samples, *batch_shape]``;
- the result has shape ``[num_samples, *batch_shape]``, its values equal ``f(z)``, and the
  autograd gradient of its mean with respect to any tensor that ``dist`` or ``f`` depends on is
  the estimator's estimate of the gradient of ``E[f]``. Parameters that ``f`` depends on directly
  (a decoder, say) always get the pathwise gradient.

Estimators of multi-sample objectives (the ELBO and the IWAE bound over K importance samples)
also implement ``estimate_objective``, called as ``est.surrogate(dist, log_joint, objective,
num_samples)`` (``MultiSample``; see ``estimators.objectives``). One that serves only objectives
(``ObjectiveOnly``: STL, DReG, VIMCO, RWS) refuses the plain call in one line.

Estimators that keep state between calls (a moving-average baseline, a learned control variate)
expose it through ``state_dict`` / ``load_state_dict`` so that a checkpoint can include it, and a
training loop calls ``est.backward(loss, dist_params)`` in place of ``loss.backward()`` so that an
estimator with a learned control variate can train it (``TrainingState``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution, Independent

from estimators.errors import ConfigError
from estimators.objectives import LogJoint, Objective
from estimators.registry import file_by_name

CostFn = Callable[[torch.Tensor], torch.Tensor]


class TrainingState:
    """What a training loop and a checkpoint see of an estimator: ``backward`` in place of
    ``loss.backward()``, train and eval modes, the learned values its tables report and the state
    kept between calls. These defaults keep nothing; a moving-average baseline keeps its average,
    a learned control variate (rebar, relax) trains in ``backward``."""

    trainable: bool = False  # True if ``backward`` trains parameters of the estimator's own
    training: bool = True  # as in torch.nn.Module: ``eval()`` freezes those parameters

    def train(self, mode: bool = True) -> TrainingState:
        """Training mode (the default): ``backward`` may train the estimator's own parameters."""
        self.training = mode
        return self

    def eval(self) -> TrainingState:
        """Evaluation mode: the estimator's own parameters stay fixed."""
        return self.train(False)

    def learned(self) -> dict[str, float]:
        """Current values of trained scalars (rebar's eta and temperature), for result tables."""
        return {}

    def backward(self, loss: torch.Tensor, *dist_params: torch.Tensor) -> None:
        """``loss.backward()``. Estimators with a learned control variate (rebar, relax) override
        it to also take a step on their own parameters, lowering the variance of their gradient
        estimate with respect to ``dist_params`` (the tensors the distribution was built from)."""
        loss.backward()

    def state_dict(self) -> dict:
        """State kept between calls (none by default), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


class Estimator(TrainingState):
    """The contract ``est(dist, f, num_samples)``: subclasses set ``name`` and implement
    ``estimate``; a call validates first."""

    name: str = ""
    title: str = ""  # the name readers know, for figures and summaries ("REINFORCE")
    variants: tuple[dict, ...] = ()  # option sets the label tells apart (none: the defaults')
    unbiased: bool = True  # False for a biased one (a relaxation): its mean is not checked
    differentiates_f: bool = False  # True if its estimate differentiates f (a pathwise or relaxed
    # sample): a cost without a derivative is refused
    objectives: tuple[str, ...] = ()  # the multi-sample objectives it serves (``MultiSample``)
    vmappable: bool = True  # False if its estimate cannot run under torch.func.vmap (which
    # training seeds side by side needs): an out= op, an autograd.Function without setup_context

    @property
    def min_samples(self) -> int:
        """The smallest ``num_samples`` this estimator accepts."""
        return 1

    def supports(self, dist: Distribution) -> bool:
        """Whether this estimator applies to ``dist`` (every one does, unless it says otherwise)."""
        return True

    def max_samples(self, dist: Distribution) -> int | None:
        """The largest ``num_samples`` it takes for ``dist`` (None: no limit); one drawing
        distinct outcomes without replacement takes at most the support's size."""
        return None

    def check(self, dist: Distribution, num_samples: int) -> None:
        """Raise ConfigError if this estimator cannot serve ``dist`` with ``num_samples`` draws."""
        if not self.supports(dist):
            applicable = [
                name
                for name, cls in sorted(REGISTRY.items())
                if not issubclass(cls, ObjectiveOnly) and cls().supports(dist)
            ]
            raise ConfigError(
                f"estimator '{self.name}' does not apply to {describe_distribution(dist)}; "
                f"estimators that do: {', '.join(applicable)}"
            )
        self.check_num_samples(num_samples)

    def check_num_samples(self, num_samples: int, key: str = "num_samples") -> None:
        """Raise ConfigError naming ``key`` unless ``num_samples`` is an integer >= min_samples."""
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, int)
            or num_samples < self.min_samples
        ):
            raise ConfigError(
                f"{key}={num_samples!r}: estimator '{self.name}'{self.describe_options()} "
                f"needs an integer num_samples >= {self.min_samples}"
            )

    def evaluations(self, dist: Distribution, num_samples: int) -> int:
        """How many evaluations of f one call's gradient estimate takes (``num_samples`` by
        default; an estimator that evaluates f elsewhere too says so), for work-normalized
        comparisons."""
        return num_samples

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        self.check(dist, num_samples)
        return self.estimate(dist, f, num_samples)

    def surrogate(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        """``num_samples`` estimates ``[num_samples, *batch]`` of ``objective`` whose gradient
        is this estimator's (``estimators.objectives`` states the contract; ``MultiSample``
        serves it): refused in one line where the estimator serves no such objective."""
        self.check_objective(dist, objective, num_samples)
        return self.estimate_objective(dist, log_joint, objective, num_samples)

    def check_objective(self, dist: Distribution, objective: Objective, num_samples: int) -> None:
        """Raise ConfigError unless this estimator estimates ``objective`` (an estimator of E[f]
        alone estimates none), naming those that do for ``dist``."""
        if objective.name not in self.objectives:
            raise ConfigError(
                f"task.objective={objective.name}: estimator '{self.name}' does not estimate "
                f"it; estimators that do for {describe_distribution(dist)}: "
                f"{', '.join(serving([objective.name], dist))}"
            )

    def options(self) -> dict:
        """The constructor options, for tables and reprs."""
        return {}

    @classmethod
    def label(cls, options: dict) -> str:
        """The name of this estimator with ``options`` (as a table stores them, values maybe
        strings) in figures and summaries: its title by default."""
        return cls.title or cls.name

    @classmethod
    def known_labels(cls) -> list[str]:
        """Its labels with each of its ``variants``, or with its default options: the places
        that give it a fixed colour in every figure."""
        try:
            default = cls().options()
        except Exception:  # an estimator that needs arguments: its title
            default = {}
        return [cls.label(options) for options in cls.variants or (default,)]

    def describe_options(self) -> str:
        """' (baseline=loo)' for messages, or '' for an estimator without options."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f" ({opts})" if opts else ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"
        )


class MultiSample:
    """The second contract, ``est.surrogate(dist, log_joint, objective, num_samples)``, served:
    mixed in before ``Estimator`` by an estimator of multi-sample objectives
    (``estimators.objectives``), which sets ``objectives`` and implements
    ``estimate_objective``."""

    min_importance_samples: int = 1  # the fewest K it takes (VIMCO leaves one out: 2)

    def __init_subclass__(cls, **kwargs) -> None:
        """Refuse ``class X(Estimator, MultiSample)``: its checks would never run."""
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        if Estimator in mro and mro.index(MultiSample) > mro.index(Estimator):
            raise TypeError(f"{cls.__qualname__}: mix MultiSample in before Estimator")

    def check_objective(self, dist: Distribution, objective: Objective, num_samples: int) -> None:
        """Raise ConfigError if this estimator cannot estimate ``objective``'s gradient for
        ``dist`` with ``num_samples`` estimates."""
        super().check_objective(dist, objective, num_samples)
        if not self.supports(dist):
            raise ConfigError(
                f"estimator '{self.name}' does not apply to {describe_distribution(dist)}; "
                f"estimators of task.objective={objective.name} that do: "
                f"{', '.join(serving([objective.name], dist))}"
            )
        if objective.num_samples < self.min_importance_samples:
            raise ConfigError(
                f"task.num_samples={objective.num_samples}: estimator '{self.name}' needs K >= "
                f"{self.min_importance_samples} importance samples"
            )
        self.check_num_samples(num_samples)

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        raise NotImplementedError


class ObjectiveOnly(MultiSample, Estimator):
    """An estimator of multi-sample objectives only (STL, DReG, VIMCO, RWS): the plain call
    ``est(dist, f, num_samples)`` is refused in one line."""

    def check(self, dist: Distribution, num_samples: int) -> None:
        raise ConfigError(
            f"estimator '{self.name}' estimates the gradients of multi-sample objectives "
            f"({', '.join(self.objectives)}) only, not of E[f] for a given f: "
            "task=vae with task.objective, or task=gaussian_lvm"
        )


def base_distribution(dist: Distribution) -> Distribution:
    """``dist`` without its ``Independent`` wrappers."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist


def describe_distribution(dist: Distribution) -> str:
    """'Normal', or 'Independent(Bernoulli)' for a wrapped one."""
    inner = base_distribution(dist)
    name = type(inner).__name__
    return name if inner is dist else f"Independent({name})"


def score_surrogate(
    fz: torch.Tensor, logp: torch.Tensor, baseline: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """DiCE's magic box: value ``fz``, gradient grad fz + (fz - baseline) grad logp."""
    signal = (fz - baseline).detach()
    return fz + signal * (logp - logp.detach())


REGISTRY: dict[str, type[Estimator]] = {}


def serving(objectives: list[str], dist: Distribution) -> list[str]:
    """The registered estimators, sorted, that estimate any of ``objectives`` for ``dist``."""
    return [
        name
        for name, cls in sorted(REGISTRY.items())
        if set(objectives) & set(cls.objectives) and cls().supports(dist)
    ]


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` buildable as ``estimators.build(cls.name)``."""
    return file_by_name(REGISTRY, cls, "estimator")

"""What the two toys share: one estimate loop and one optimize loop over a cost x k grid.

A toy draws from a distribution whose ``dim`` coordinates all start at the same parameters, with
f(x) = sum_j c(x_j; k). Mode ``estimate`` measures ``n_estimates`` independent estimates of the
gradient with respect to the first coordinate's parameters in chunks: each chunk is one batched
distribution of ``chunk`` independent copies of the parameters and one backward pass, so row b of
the parameter gradients is estimate b. Mode ``optimize`` minimizes E[f] over the parameters with
the estimator and records the exact objective (``toy_optimize``, mixed into ``Toy``). A trainable
estimator (a learned control variate) trains for ``cv_steps`` steps at the starting parameters
before it is measured, and along the way while optimizing. A subclass supplies only its
distribution, costs, objective and exact answers.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch.distributions import Distribution

from benchmarks.measure import (
    Model,
    gradient_estimates,
    measure_estimates,
    train_control_variate,
)
from benchmarks.moments import Moments, gradient_statistics
from benchmarks.progress import Progress
from benchmarks.tasks.base import (
    Context,
    EstimatorFactory,
    Result,
    Rows,
    Task,
    learned_columns,
    run_columns,
)
from benchmarks.tasks.toy.optimize import OPTIMIZE_COLUMNS, OptimizeMode
from estimators.base import Estimator
from estimators.errors import ConfigError, require_int

if TYPE_CHECKING:
    import pandas as pd

MODES = ("estimate", "optimize")
CostFn = Callable[[torch.Tensor], torch.Tensor]


def seed_for(seed: int, cost: str, k: float) -> int:
    """A seed per (cost, k), so a row's numbers do not depend on which other rows were asked for."""
    return zlib.crc32(f"{seed}/{cost}/{k!r}".encode())


@contextmanager
def overflow_names_k(cost: str, k: float) -> Iterator[None]:
    """A float overflow while working on (cost, k), in the exact moments or the measured ones,
    becomes one line naming k instead of a traceback or a table of infinities."""
    try:
        yield
    except OverflowError:
        raise ConfigError(
            f"task.k={k:g}: cost {cost!r} overflows floating point at this k; choose a smaller |k|"
        ) from None


def require_finite_moments(*values: float | None) -> None:
    """OverflowError where a measured or exact moment is not finite (None: no exact one)."""
    if not all(math.isfinite(v) for v in values if v is not None):
        raise OverflowError


def or_nan(value: float | None) -> float:
    """An exact answer for a table cell: NaN where there is none."""
    return math.nan if value is None else value


def require_finite(cfg: DictConfig, key: str, prefix: str = "task.") -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{prefix}{key}={value!r}: must be a finite number")


class Toy(OptimizeMode, Task):
    """The shared loops. A subclass sets ``params`` (the parameter names, one row each in
    metrics.csv), ``costs`` and ``dtype`` and implements the methods that raise here."""

    tables = ("metrics", "optimize")
    figures_module = "benchmarks.tasks.toy.figures.summary"
    summary_columns: ClassVar[dict[str, list[str]]] = {
        "metrics": [
            "estimator",
            "options",
            "cost",
            "k",
            "param",
            "num_samples",
            "theta",
            "exact_grad",
            "exact_mean",
            "grad_mean",
            "z_score",
            "exact_var",
            "grad_var",
            "grad_var_lo",
            "grad_var_hi",
            "time_per_estimate_s",
            "learned_eta",
            "learned_temperature",
            "learned_alpha",
            "learned_beta",
        ],
        "optimize": OPTIMIZE_COLUMNS,
    }
    params: ClassVar[tuple[str, ...]] = ()
    costs: ClassVar[tuple[str, ...]] = ()
    dtype: ClassVar[torch.dtype] = torch.float32

    # What a subclass supplies.

    def distribution(self, *params: torch.Tensor) -> Distribution:
        """The distribution at the parameters, each [..., dim], over the last axis."""
        raise NotImplementedError

    def cost(self, cost: str, k: float) -> CostFn:
        """f(x) = sum_j c(x_j; k) over the last axis."""
        raise NotImplementedError

    def objective(self, cost: str, k: float, params: list[torch.Tensor]) -> float:
        """The exact E[f] at the parameters."""
        raise NotImplementedError

    def exact(
        self, estimator: Estimator, cost: str, k: float, num_samples: int
    ) -> dict[str, tuple[float | None, float | None, float | None]]:
        """Per parameter at the starting point: the exact gradient, and the estimator's exact
        expectation and variance of one estimate (None where the toy knows none)."""
        raise NotImplementedError

    def start(self) -> dict[str, float]:
        """The starting value of each parameter (the same for every coordinate)."""
        raise NotImplementedError

    def optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def after_step(self, params: list[torch.Tensor]) -> None:
        """Keep the parameters in their domain after an optimizer step (nothing by default)."""

    def check_options(self, estimator: Estimator, num_samples: int) -> None:
        """The subclass's own keys and its costs (an unknown one, a k it cannot serve)."""

    # The shared part.

    def initial(self, device: torch.device) -> list[torch.Tensor]:
        """Each parameter as a [dim] tensor at its starting value (a toy may override it)."""
        dim = self.cfg.dim
        return [
            torch.full((dim,), float(v), dtype=self.dtype, device=device)
            for v in self.start().values()
        ]

    def model(self, f: CostFn) -> Model:
        """The toy's distribution at copies of its parameters (``params``' order) and f."""
        return lambda copies: (self.distribution(*copies.values()), f)

    def gradient_estimates(
        self,
        estimator: Estimator,
        f: CostFn,
        params: list[torch.Tensor],
        num_samples: int,
        batch: int,
    ) -> list[torch.Tensor]:
        """``batch`` independent estimates of the gradient of E[f] with respect to each
        parameter's first coordinate, at ``params`` (each [dim], or [dim, C] for logits over C
        classes: its first entry), from one backward pass."""
        named = dict(zip(self.params, params, strict=True))
        grads = gradient_estimates(estimator, self.model(f), named, num_samples, batch)
        return [g.flatten(1)[:, 0] for g in grads.values()]

    def measure(
        self,
        estimator: Estimator,
        f: CostFn,
        params: list[torch.Tensor],
        num_samples: int,
        device: torch.device,
        on_chunk: Callable[[int], None] = lambda batch: None,
    ) -> tuple[dict[str, Moments], float]:
        """Streaming moments of ``n_estimates`` estimates per parameter, in chunks of
        ``chunk_size``, and the seconds per estimate; ``on_chunk(b)`` after each chunk."""
        return measure_estimates(
            lambda batch: self.gradient_estimates(estimator, f, params, num_samples, batch),
            self.params,
            self.cfg.n_estimates,
            self.cfg.chunk_size,
            device,
            on_chunk,
        )

    def evaluations(self, estimator: Estimator, num_samples: int, device: torch.device) -> int:
        """Evaluations of f per estimate (``Estimator.evaluations``) at the toy's ``dim``."""
        probe = [p.unsqueeze(0) for p in self.initial(device)]
        return estimator.evaluations(self.distribution(*probe), num_samples)

    def train_control_variate(
        self, estimator: Estimator, f: CostFn, params: list[torch.Tensor], num_samples: int
    ) -> None:
        """``cv_steps`` steps of a learned control variate (rebar, relax) at fixed parameters,
        each on ``cv_batch`` estimates (``measure.train_control_variate``); then freeze it."""
        named = dict(zip(self.params, params, strict=True))
        train_control_variate(
            estimator, self.model(f), named, num_samples, self.cfg.cv_batch, self.cfg.cv_steps
        )

    def cases(
        self, make_estimator: EstimatorFactory, seed: int
    ) -> Iterator[tuple[str, float, Estimator, int]]:
        """(cost, k, estimator, num_samples) for every cost x k, each with a fresh estimator
        (fresh state: a moving average, a learned control variate) and the random stream seeded
        for that pair, so a row's numbers do not depend on which other rows were asked for."""
        for cost in self.cfg.costs:
            for k in map(float, self.cfg.k):
                estimator = make_estimator()
                num_samples = self.cfg.num_samples or estimator.min_samples
                torch.manual_seed(seed_for(seed, cost, k))
                yield cost, k, estimator, num_samples

    def run_columns(self, estimator: Estimator, context: Context) -> dict:
        """The columns that say which run a row comes from."""
        return run_columns(estimator, self.name, context.seed, context.device)

    def point_columns(self) -> dict:
        """mu, sigma and theta: the starting point, NaN for another toy's parameters."""
        start = self.start()
        return {name: float(start.get(name, math.nan)) for name in ("mu", "sigma", "theta")}

    def estimate_rows(
        self, make_estimator: EstimatorFactory, context: Context
    ) -> Iterator[list[dict]]:
        """Per cost x k, one row per parameter: measured statistics beside the exact ones."""
        cfg = self.cfg
        point = self.point_columns()
        with Progress(len(cfg.costs) * len(cfg.k) * cfg.n_estimates, "estimates") as progress:

            def done(batch: int) -> None:
                context.progress["estimates"] += batch
                progress.update(batch)

            for cost, k, estimator, num_samples in self.cases(make_estimator, context.seed):
                context.progress.update(cost=cost, k=k, estimates=0)
                progress.describe(f"{cost}, k={k:g}")
                rows = []
                with overflow_names_k(cost, k):
                    f = self.cost(cost, k)
                    params = self.initial(context.device)
                    if estimator.trainable:
                        self.train_control_variate(estimator, f, params, num_samples)
                    moments, seconds = self.measure(
                        estimator, f, params, num_samples, context.device, done
                    )
                    exact = self.exact(estimator, cost, k, num_samples)
                    evaluations = self.evaluations(estimator, num_samples, context.device)
                    for param in self.params:
                        exact_grad, exact_mean, exact_var = exact[param]
                        stats = gradient_statistics(moments[param], or_nan(exact_grad), seconds)
                        require_finite_moments(
                            stats["grad_mean"], stats["grad_var"], exact_grad, exact_mean, exact_var
                        )
                        rows.append(
                            {
                                **self.run_columns(estimator, context),
                                "cost": cost,
                                "k": k,
                                "param": param,
                                "dim": cfg.dim,
                                "mu": point["mu"],
                                "sigma": point["sigma"],
                                "num_samples": num_samples,
                                "evaluations": evaluations,
                                "n_estimates": cfg.n_estimates,
                                **stats,
                                "theta": point["theta"],
                                **learned_columns(estimator),
                                "exact_mean": or_nan(exact_mean),
                                "exact_var": or_nan(exact_var),
                            }
                        )
                yield rows

    def optimize_rows(
        self, make_estimator: EstimatorFactory, context: Context
    ) -> Iterator[list[dict]]:
        """For each (cost, k), its trajectory's logged rows (``trajectory``), as they come."""
        cfg = self.cfg
        with Progress(len(cfg.costs) * len(cfg.k) * cfg.optimize.steps, "steps") as progress:
            for cost, k, estimator, num_samples in self.cases(make_estimator, context.seed):
                progress.describe(f"{cost}, k={k:g}")
                with overflow_names_k(cost, k):
                    yield from self.trajectory(cost, k, estimator, num_samples, context, progress)

    def validate(self, estimator: Estimator, context: Context) -> None:
        """The keys every toy shares (mode, sizes, num_samples, the costs and k lists, the
        control variate's training, the optimization's), then the subclass's, then whether the
        estimator applies; a ConfigError names the key and what is accepted."""
        cfg = self.cfg
        if cfg.mode not in MODES:
            raise ConfigError(f"task.mode={cfg.mode!r}: accepted modes are {', '.join(MODES)}")
        for key in ("dim", "n_estimates", "chunk_size", "cv_batch"):
            require_int(cfg[key], f"task.{key}")
        require_int(cfg.cv_steps, "task.cv_steps", minimum=0)
        if cfg.n_estimates < 2:
            raise ConfigError(f"task.n_estimates={cfg.n_estimates}: a variance needs at least 2")
        if cfg.num_samples is not None:
            estimator.check_num_samples(cfg.num_samples, "task.num_samples")
        if not OmegaConf.is_list(cfg.costs) or not cfg.costs:
            raise ConfigError(
                f"task.costs={cfg.costs!r}: must be a non-empty list of {list(self.costs)}"
            )
        if not OmegaConf.is_list(cfg.k) or not cfg.k:
            raise ConfigError(f"task.k={cfg.k!r}: must be a non-empty list of numbers, e.g. [1.0]")
        for k in cfg.k:
            if isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k):
                raise ConfigError(f"task.k: {k!r} is not a finite number")
        if cfg.mode == "optimize":
            for key in ("steps", "log_every"):
                require_int(cfg.optimize[key], f"task.optimize.{key}")
            require_finite(cfg.optimize, "lr", "task.optimize.")
            if cfg.optimize.lr <= 0:
                raise ConfigError(f"task.optimize.lr={cfg.optimize.lr!r}: must be > 0")
            m = cfg.optimize.var_estimates
            if isinstance(m, bool) or not isinstance(m, int) or m < 0 or m == 1:
                raise ConfigError(
                    f"task.optimize.var_estimates={m!r}: must be 0 (skip) or an integer >= 2"
                )
        for name in self.start():
            require_finite(cfg, name)
        num_samples = cfg.num_samples or estimator.min_samples
        self.check_options(estimator, num_samples)
        probe = [p.unsqueeze(0) for p in self.initial(context.device)]
        estimator.check(self.distribution(*probe), num_samples)

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        """``metrics`` (mode estimate) or ``optimize`` (mode optimize). Interrupted, it writes
        the rows so far (whole cost x k cases, or logged steps) before passing the interrupt on."""
        if self.cfg.mode == "estimate":
            name, batches = "metrics", self.estimate_rows(make_estimator, context)
        else:
            name, batches = "optimize", self.optimize_rows(make_estimator, context)
        rows: Rows = []
        try:
            for batch in batches:
                rows.extend(batch)
        except KeyboardInterrupt:
            if rows and context.writer is not None:
                context.writer.table(name, rows)
            raise
        if name == "metrics":
            return Result({"metrics": rows})
        diverged = any(row["diverged"] for row in rows)
        return Result({"optimize": rows}, "diverged" if diverged else "completed")

    def summary_rows(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Every metrics row, without exact_mean where it only repeats exact_grad (every unbiased
        estimator); each optimization's last row."""
        if name == "optimize":
            return table.groupby(["cost", "k"], sort=False).tail(1)
        if table["exact_mean"].equals(table["exact_grad"]):
            return table.drop(columns="exact_mean")
        return table

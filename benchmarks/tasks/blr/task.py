"""Bayesian logistic regression as a task: ``python -m benchmarks.run task=blr estimator=NAME``.

The larger experiment of Mohamed et al. (2020) (google-deepmind/mc_gradients): scikit-learn's
breast_cancer data (569 x 30, standardized, plus a bias column: D = 31), prior N(0, I), a
diagonal Gaussian posterior q(w) = N(loc, exp(log_scale)^2) starting at loc = log_scale = 0, and

    ELBO = N mean_batch E_q[log p(y | x, w)] - KL(q || prior),

the expected log-likelihood's gradient from the estimator (``est(q, f, num_samples)`` with
f(w) = N mean_batch log p(y | x, w)), the KL's exact through autograd. SGD with mc_gradients'
cosine decay lr cos(pi/2 t / T). Every ``eval_every`` steps, on the full data: the ELBO and the
accuracy from ``eval_samples`` posterior draws, and the variance per coordinate of the
estimator's gradient of the full-data expected log-likelihood, over ``grad_var_estimates``
independent estimates, as its mean and max over the 62 coordinates (loc and log_scale) and per
parameter group.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch.distributions import Independent, Normal
from torch.nn.functional import logsigmoid

from benchmarks.measure import gradient_estimates
from benchmarks.progress import Progress
from benchmarks.tasks.base import (
    Context,
    EstimatorFactory,
    Result,
    Rows,
    Task,
    register,
    run_columns,
)
from estimators.base import Estimator
from estimators.errors import ConfigError, positive_number, require_int

if TYPE_CHECKING:  # annotations only: a task imports no pandas at module level
    import pandas as pd

DATA = ("breast_cancer",)
DIM = 31  # breast_cancer's 30 features and the bias
GROUPS = ("loc", "log_scale")


# The model, as pure functions of tensors.


def breast_cancer() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled breast_cancer: features standardized per column with a column of
    ones appended [569, 31], and labels in {0, 1} [569]."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    return torch.cat([x, torch.ones(len(x), 1)], 1), torch.as_tensor(y, dtype=torch.float32)


def posterior(loc: torch.Tensor, log_scale: torch.Tensor) -> Independent:
    """q(w) = N(loc, diag(exp(log_scale))^2) over the last axis (earlier axes: copies)."""
    return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1)


def log_likelihood(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """f(w) = n mean_batch log p(y | x, w): weights [..., D], batch x [B, D], y [B] -> [...]."""
    logits = w @ x.T
    return n * logsigmoid((2 * y - 1) * logits).mean(-1)


def kl_to_prior(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """KL(q || N(0, I)) in closed form, summed over the last axis."""
    return (0.5 * (loc.square() + (2 * log_scale).exp() - 1) - log_scale).sum(-1)


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """mc_gradients' decay: lr cos(pi/2 step / steps), from lr at step 0 to 0 at the last."""
    return lr * math.cos(0.5 * math.pi * step / steps)


@torch.no_grad()
def evaluate(
    loc: torch.Tensor, log_scale: torch.Tensor, x: torch.Tensor, y: torch.Tensor, draws: int
) -> tuple[float, float]:
    """The full-data ELBO and accuracy from ``draws`` posterior draws. Accuracy as mc_gradients
    reports it: the share of (draw, example) pairs whose sign of the logit is right, i.e. the
    expected accuracy of one posterior draw (not the posterior predictive's)."""
    w = posterior(loc, log_scale).sample((draws,))
    logits = w @ x.T
    expected = logsigmoid((2 * y - 1) * logits).sum(-1).mean()
    elbo = expected - kl_to_prior(loc, log_scale)
    accuracy = ((logits >= 0).float() == y).float().mean()
    return elbo.item(), accuracy.item()


def gradient_matrix(
    estimator: Estimator,
    loc: torch.Tensor,
    log_scale: torch.Tensor,
    f: Callable[[torch.Tensor], torch.Tensor],
    m: int,
    num_samples: int,
    chunk: int,
) -> torch.Tensor:
    """``m`` independent estimates [m, 2 D] (loc's coordinates, then log_scale's) of the gradient
    of E_q[f], each from ``num_samples`` draws, ``chunk`` estimates per backward pass
    (``measure.gradient_estimates``)."""
    params = {"loc": loc, "log_scale": log_scale}

    def model(copies):
        return posterior(copies["loc"], copies["log_scale"]), f

    rows = []
    for start in range(0, m, chunk):
        grads = gradient_estimates(estimator, model, params, num_samples, min(chunk, m - start))
        rows.append(torch.cat(list(grads.values()), -1))
    return torch.cat(rows)


def variance_columns(grads: torch.Tensor) -> dict[str, float]:
    """The variance per coordinate of ``grads`` [m, 2 D] (unbiased, over the m estimates): its
    mean and max over all coordinates and over each group's D."""
    var = grads.var(0)
    columns = {"grad_var_mean": var.mean().item(), "grad_var_max": var.max().item()}
    for name, part in zip(GROUPS, var.chunk(2), strict=True):
        columns[f"{name}_grad_var_mean"] = part.mean().item()
        columns[f"{name}_grad_var_max"] = part.max().item()
    return columns


# The task.


@register
class BLRTask(Task):
    """Bayesian logistic regression trained with the estimator on the expected log-likelihood:
    a ``train`` row every ``eval_every`` steps (``conf/task/blr.yaml`` lists the options)."""

    name = "blr"
    tables = ("train",)
    figures_module = "benchmarks.tasks.blr.figures"
    summary_columns: ClassVar[dict[str, list[str]]] = {
        "train": [
            "estimator",
            "options",
            "step",
            "elbo",
            "accuracy",
            "grad_var_mean",
            "grad_var_max",
            "time_s",
        ]
    }

    def validate(self, estimator: Estimator, context: Context) -> None:
        """Every key, then the estimator against q and the draws it is given, before any work."""
        cfg = self.cfg
        if cfg.data not in DATA:
            raise ConfigError(f"task.data={cfg.data!r}: accepted are {', '.join(DATA)}")
        for key in ("steps", "batch_size", "eval_every", "eval_samples", "grad_var_chunk"):
            require_int(cfg[key], f"task.{key}")
        require_int(cfg.grad_var_estimates, "task.grad_var_estimates", minimum=2)
        positive_number(cfg.lr, "task.lr")
        estimator.check_num_samples(cfg.num_samples, "task.num_samples")
        if cfg.grad_var_samples is not None:
            estimator.check_num_samples(cfg.grad_var_samples, "task.grad_var_samples")
        estimator.check(posterior(torch.zeros(DIM), torch.zeros(DIM)), cfg.num_samples)

    def summary_rows(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """The printed row: the last evaluation."""
        return table.tail(1)

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        """The training loop (a step on each batch of each epoch), evaluated every
        ``eval_every`` steps and after the last; a step that is not finite stops the run."""
        cfg, device, seed = self.cfg, context.device, context.seed
        estimator = make_estimator()
        x, y = (t.to(device) for t in breast_cancer())
        n = len(x)
        loc = torch.zeros(x.shape[1], device=device, requires_grad=True)
        log_scale = torch.zeros(x.shape[1], device=device, requires_grad=True)
        optimizer = torch.optim.SGD([loc, log_scale], lr=cfg.lr)
        batches = torch.Generator(device=device).manual_seed(seed)
        grad_var_samples = cfg.grad_var_samples or estimator.min_samples
        rows: list[dict] = []
        seconds, step = 0.0, 0

        def measure() -> None:
            """An evaluation row at ``step``, from its own random stream: the training draws
            are the same whatever is measured."""
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed + 1_000_003 * (step + 1))
                elbo, accuracy = evaluate(loc, log_scale, x, y, cfg.eval_samples)
                grads = gradient_matrix(
                    copy.deepcopy(estimator).eval(),
                    loc,
                    log_scale,
                    lambda w: log_likelihood(w, x, y, n),
                    cfg.grad_var_estimates,
                    grad_var_samples,
                    cfg.grad_var_chunk,
                )
            rows.append(
                {
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "elbo": elbo,
                    "accuracy": accuracy,
                    **variance_columns(grads),
                    "time_s": seconds,
                }
            )

        def epoch() -> tuple[torch.Tensor, ...]:
            return torch.randperm(n, generator=batches, device=device).split(cfg.batch_size)

        progress = Progress(cfg.steps, "steps")
        measure()
        order: list[torch.Tensor] = []
        status, message = "completed", ""
        while step < cfg.steps:
            order = order or list(epoch())
            index = order.pop(0)
            start = time.perf_counter()
            loss = train_step(
                estimator, optimizer, loc, log_scale, x[index], y[index], n, cfg.num_samples
            )
            if not math.isfinite(loss):
                status, message = "diverged", f"diverged at step {step + 1}: loss {loss:.4g}"
                print(f"{estimator.name}: {message}; stopping this run", file=sys.stderr)
                break
            step += 1
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(cfg.lr, step, cfg.steps)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - start
            context.progress.update(step=step)
            progress.update()
            if step % cfg.eval_every == 0 or step == cfg.steps:
                measure()
                progress.show(elbo=f"{rows[-1]['elbo']:.1f}")
        progress.close()
        return Result(
            {"train": self.table(rows, estimator, context, grad_var_samples)},
            status,
            {"step": step, "message": message},
        )

    def table(
        self, rows: list[dict], estimator: Estimator, context: Context, grad_var_samples: int
    ) -> Rows:
        columns = run_columns(
            estimator,
            self.name,
            context.seed,
            context.device,
            {"data": self.cfg.data},
            num_samples=self.cfg.num_samples,
            batch_size=self.cfg.batch_size,
            grad_var_estimates=self.cfg.grad_var_estimates,
            grad_var_samples=grad_var_samples,
        )
        return [{**columns, **row} for row in rows]


def train_step(
    estimator: Estimator,
    optimizer: torch.optim.Optimizer,
    loc: torch.Tensor,
    log_scale: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int,
    num_samples: int,
) -> float:
    """One SGD step on -ELBO over the batch (x, y) of a data set of ``n``: the estimator's
    gradient of the expected log-likelihood, the KL's exact. Returns the loss; a loss that is
    not finite leaves the parameters as they were."""
    values = estimator(posterior(loc, log_scale), lambda w: log_likelihood(w, x, y, n), num_samples)
    loss = kl_to_prior(loc, log_scale) - values.mean()
    optimizer.zero_grad(set_to_none=True)
    estimator.backward(loss, loc, log_scale)
    value = loss.item()
    if math.isfinite(value):
        optimizer.step()
    return value

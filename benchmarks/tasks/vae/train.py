"""Training the VAE: one step on -ELBO (or -IWAE), and a trainer whose loop reads as
pytorch/examples vae/main.py does (for each epoch: a step on each batch, then evaluate, then
checkpoint), with the gradient probe, the checkpoints, resuming and the divergence stop beside
the loop.

A step does not wait for the device: its values stay there until the trainer reads a stretch of
steps at once (``Trainer.flush``: every ``FLUSH_EVERY`` steps, before a probe, an evaluation or
the end), which is also where a step that was not finite is found and the run stops at it."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from benchmarks.measure import synchronize, unvalidated
from benchmarks.progress import Progress
from benchmarks.tasks.base import Context, Result, Rows, run_columns
from benchmarks.tasks.vae import data
from benchmarks.tasks.vae.evaluate import evaluation_row, fixed_train_set
from benchmarks.tasks.vae.models import (
    VAE,
    LearnedBaseline,
    encoder_size,
    make_model,
    posterior,
    step_loss,
)
from benchmarks.tasks.vae.probe import probe_rows
from benchmarks.tasks.vae.settings import OPTIMIZERS
from estimators.base import Estimator
from estimators.baselines import Supplied
from estimators.errors import ConfigError
from estimators.objectives import Objective

log = logging.getLogger(__name__)
TABLES = ("train", "eval", "grad_var")
FLUSH_EVERY = 100
"""Steps between reads of the steps' values from the device (a wait for it on a GPU)."""


def train_step(
    model: VAE,
    estimator: Estimator,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    x: torch.Tensor,
    num_samples: int,
    baseline: LearnedBaseline | None = None,
    objective: Objective | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step on -ELBO (plus NVIL's regression of the learning signal when ``baseline``), or
    with ``objective`` on minus the mean of ``num_samples`` estimates of the ELBO or IWAE bound.

    Returns, as tensors on the device (read without waiting for it), the batch's mean objective,
    the loss, the gradient norm and whether both were finite. The parameters are updated either
    way: a step that was not finite ends the run, which the caller decides when it reads them.
    """
    h, per_example, loss = step_loss(model, estimator, x, num_samples, baseline, objective)
    optimizer.zero_grad(set_to_none=True)
    estimator.backward(loss, h)
    grads = [p.grad for p in params if p.grad is not None]
    # clip_grad_norm_'s norm (its arithmetic, the same bits) without its clipping by 1 and its
    # grouping by device and dtype, which cost a small step a tenth of its time on a CPU
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
    optimizer.step()
    return per_example.detach().mean(), loss.detach(), grad_norm, finite


def compiled(step: Callable) -> Callable:
    """``step`` through ``torch.compile`` (``task.compile``), its random draws made by eager
    mode's generator (inductor's ``fallback_random``, set for this function only): the same
    numbers as the eager step up to float rounding. Graphs are built at the first call, one
    set for each batch shape (static: the full batch, and an epoch's smaller last one).

    Each run compiles afresh: graphs that earlier runs in this process (a sweep, a test session)
    built for the same function count against torch's recompile limit (8), past which it runs
    the step eagerly without a word."""
    torch._dynamo.reset()
    return torch.compile(step, dynamic=False, options={"fallback_random": True})


@dataclass(frozen=True)
class Pending:
    """A step whose values are still on the device: its number, epoch, the training seconds at
    its end, whether it gets a ``train`` row, and its values (objective, loss, gradient norm,
    finite) stacked in one tensor."""

    step: int
    epoch: int
    seconds: float
    logged: bool
    values: torch.Tensor


class Diverged(Exception):
    """A step whose loss or gradient is not finite: the run stops with status ``diverged``."""


class Trainer:
    """One run: a model trained with one estimator, measured and checkpointed as it goes.

    ``task`` holds the resolved settings; ``state`` (epoch, step, training seconds and the rows of
    each table) is what a checkpoint saves beside the model, the optimizer and the random streams.
    """

    def __init__(
        self,
        task: DictConfig,
        dataset: data.Dataset,
        estimator: Estimator,
        num_samples: int,
        context: Context,
        supplied: Supplied | None = None,
        objective: Objective | None = None,
    ) -> None:
        self.task, self.dataset, self.estimator = task, dataset, estimator
        self.num_samples, self.context, self.objective = num_samples, context, objective
        # Evaluations of f (the decoder's likelihood) per example and step, on q of one example.
        h = torch.zeros(1, encoder_size(task.latent, task.latent_dim, task.categories))
        q = posterior(h, task.latent, task.categories)
        self.evaluations = estimator.evaluations(q, num_samples)
        if objective is not None:  # S estimates of K draws each
            self.evaluations = num_samples * objective.num_samples
        self.device, self.seed, self.writer = context.device, context.seed, context.writer
        torch.manual_seed(self.seed)
        self.model = make_model(dataset, task).to(self.device)
        self.baseline = LearnedBaseline(dataset.dim, task.baseline_hidden, supplied)
        self.baseline.to(self.device)
        self.learned = self.baseline if supplied is not None else None
        self.params = list(self.model.parameters())
        if self.learned is not None:
            self.params += list(self.learned.parameters())
        self.optimizer = OPTIMIZERS[task.optimizer](self.params, lr=task.lr)
        self.batches = torch.Generator(device=self.device).manual_seed(self.seed)
        self.total_steps = task.epochs * math.ceil(len(dataset.train) / task.batch_size)
        if task.max_steps:
            self.total_steps = min(self.total_steps, task.max_steps)
        self.probe_x = dataset.train[: task.batch_size]
        if dataset.dynamic_binarization:
            stream = torch.Generator(self.device).manual_seed(self.seed)
            self.probe_x = torch.bernoulli(self.probe_x, generator=stream)
        self.train_x = fixed_train_set(dataset, self.seed)
        self.state = {
            "epoch": 0,
            "step": 0,
            "seconds": 0.0,
            "train": [],
            "eval": [],
            "grad_var": [],
        }
        self.pending: list[Pending] = []
        self.label = ""  # before its progress notes: which seed, where seeds train side by side
        self.train_step = compiled(train_step) if task.compile else train_step

    def fit(self) -> Result:
        """The loop: for each epoch, a step on each batch (logged, probed when due), then an
        evaluation and a checkpoint; a step that is not finite stops the run as diverged."""
        self.progress = Progress(self.total_steps, "steps", initial=self.state["step"])
        if self.state["step"] == 0:
            self.probe_when_due()
        try:
            with unvalidated():
                while not self.done():
                    self.train_epoch()
                    self.state["epoch"] += 1
                    self.evaluate()
                    self.save()
        except Diverged as stop:
            return self.diverged(str(stop))
        self.progress.close()
        return self.result("completed")

    def train_epoch(self) -> None:
        """A step on each batch of one epoch (probed when due), read back in stretches."""
        for index in self.epoch_order():
            if self.done():
                break
            try:
                self.step(index)
            except Exception:  # NaN parameters from a step not yet read can raise here:
                self.flush()  # then Diverged names that step
                raise
            if len(self.pending) >= FLUSH_EVERY:
                self.flush()
            self.probe_when_due()
        self.flush()

    def done(self) -> bool:
        over_time = self.task.max_seconds is not None
        over_time = over_time and self.state["seconds"] >= self.task.max_seconds
        return self.state["step"] >= self.total_steps or over_time

    def epoch_order(self) -> list[torch.Tensor]:
        """The indices of each batch of one epoch, shuffled by the run's batch stream."""
        n = len(self.dataset.train)
        order = torch.randperm(n, generator=self.batches, device=self.device)
        return order.split(self.task.batch_size)

    def step(self, index: torch.Tensor) -> None:
        """One timed training step on the batch at ``index``, kept pending: its time is the
        host's (a GPU's queued work is waited for, and timed, in ``flush``)."""
        start = time.perf_counter()
        values = self.train_step(
            self.model,
            self.estimator,
            self.optimizer,
            self.params,
            self.batch(index),
            self.num_samples,
            self.learned,
            self.objective,
        )
        self.record(torch.stack(values), time.perf_counter() - start)
        self.progress.update()

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """The training examples at ``index`` (binarized afresh from the batch stream where the
        dataset is dynamically binarized)."""
        x = self.dataset.train[index]
        if self.dataset.dynamic_binarization:
            x = torch.bernoulli(x, generator=self.batches)
        return x

    def record(self, values: torch.Tensor, seconds: float) -> None:
        """A step taken in ``seconds``, its ``values`` still on the device: pending until read."""
        state = self.state
        state["seconds"] += seconds
        state["step"] += 1
        logged = state["step"] % self.task.log_every == 0 or self.done()
        self.pending.append(
            Pending(state["step"], state["epoch"], state["seconds"], logged, values)
        )

    def flush(self) -> None:
        """Read the pending steps from the device at once: a ``train`` row for each one due (every
        ``log_every`` steps and at the last); at the first that was not finite, the run stops as
        diverged at the step before it (the seconds keep every step's time)."""
        if not self.pending:
            return
        wait = time.perf_counter()
        synchronize(self.device)
        self.state["seconds"] += time.perf_counter() - wait
        pending, self.pending = self.pending, []
        values = torch.stack([p.values for p in pending]).tolist()
        for p, (value, loss, grad_norm, finite) in zip(pending, values, strict=True):
            if not finite:
                self.state["step"] = p.step - 1
                raise Diverged(
                    f"diverged at step {p.step}: loss {loss:.4g}, gradient norm {grad_norm:.4g}"
                )
            if p.logged:
                row = {"step": p.step, "epoch": p.epoch + 1, "time_s": p.seconds}
                self.state["train"].append({**row, "train_elbo": value})
        self.progress.show(train_elbo=f"{value:.2f}")
        self.context.progress.update(epoch=self.state["epoch"], step=self.state["step"])

    def probe_when_due(self) -> None:
        """``grad_var`` rows every ``grad_var_every`` steps (and at step 0), from the probe."""
        if not self.probe_due():
            return
        task, step = self.task, self.state["step"]
        self.flush()
        seed = self.seed + 1_000_003 * step
        m = task.grad_var_samples
        learned = (
            self.learned.supplying(self.probe_x) if self.learned is not None else nullcontext()
        )
        with learned:
            rows = probe_rows(
                self.model, self.estimator, self.probe_x, self.num_samples, m, seed, self.objective
            )
        self.state["grad_var"] += [{"step": step, "M": m, **row} for row in rows]

    def probe_due(self) -> bool:
        task = self.task
        every, step = task.grad_var_every, self.state["step"]
        return bool(every and task.grad_var_samples and step % every == 0)

    def evaluate(self) -> None:
        """An ``eval`` row after each epoch (with the IWAE bound after the last), and its line."""
        task, state = self.task, self.state
        final = self.done()
        seed = self.seed + 7_919 * state["step"]
        measures = evaluation_row(
            self.model, self.dataset, self.train_x, task, seed, final, self.objective
        )
        row = {"epoch": state["epoch"], "step": state["step"], "time_s": state["seconds"]}
        state["eval"].append({**row, **measures})
        self.context.progress.update(epoch=state["epoch"], step=state["step"])
        iwae = f", IWAE({task.iwae_k}) {measures['test_iwae']:.3f}" if final and task.iwae_k else ""
        self.progress.note(
            f"{self.label}epoch {state['epoch']}/{task.epochs} step {state['step']}: "
            f"test ELBO {measures['test_elbo']:.3f}{iwae} ({state['seconds']:.1f} s training)"
        )

    def save(self) -> None:
        """``checkpoint.pt`` after each epoch (where ``task.checkpoint``), with the tables so far
        and status ``running``."""
        if not self.task.checkpoint:
            return
        cuda = self.device.type == "cuda"
        self.writer.checkpoint(
            {
                "model": self.model.state_dict(),
                "baseline": self.baseline.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "estimator": self.estimator.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
                "batches": self.batches.get_state(),
                "state": self.state,
            }
        )
        for name, rows in self.tables().items():
            self.writer.table(name, rows)
        self.writer.status(
            "running", epoch=self.state["epoch"], step=self.state["step"], message=""
        )

    def resume(self) -> None:
        """Continue from the checkpoint in the run folder; from step 0 where there is none (a job
        requeued before its first checkpoint, or a mistyped folder)."""
        saved = self.writer.load_checkpoint(self.device)
        if saved is None:
            log.warning(
                "resume=true: no checkpoint in %s; starting from step 0", self.writer.run_dir
            )
            return
        if "parallel_seeds" in saved:
            raise ConfigError(
                f"resume=true: the checkpoint in {self.writer.run_dir} was written by a run with "
                f"task.parallel_seeds={saved['parallel_seeds']}; resume with that"
            )
        self.model.load_state_dict(saved["model"])
        self.baseline.load_state_dict(saved["baseline"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.estimator.load_state_dict(saved["estimator"])
        # map_location moved every tensor to the device; RNG states must be CPU byte tensors
        torch.set_rng_state(saved["rng"].cpu())
        self.batches.set_state(saved["batches"].cpu())
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), self.device)
        self.state = saved["state"]
        self.context.progress.update(epoch=self.state["epoch"], step=self.state["step"])
        where = self.writer.path("checkpoint.pt")
        log.info(
            "resumed from %s at epoch %d, step %d", where, self.state["epoch"], self.state["step"]
        )

    def diverged(self, message: str) -> Result:
        """Stop: say so on stderr and return what was measured, with status ``diverged``."""
        self.progress.close()
        print(f"{self.estimator.name}: {message}; stopping this run", file=sys.stderr)
        return self.result("diverged", message)

    def result(self, status: str, message: str = "") -> Result:
        details = {"epoch": self.state["epoch"], "step": self.state["step"], "message": message}
        return Result(self.tables(), status, details)

    def tables(self) -> dict[str, Rows]:
        """``train``, ``eval`` and ``grad_var`` so far, each row with the run's columns."""
        columns = run_columns(
            self.estimator,
            "vae",
            self.seed,
            self.device,
            {"dataset": self.dataset.name},
            num_samples=self.num_samples,
            # not "objective": the toy task's tables have a numeric column of that name
            objective_name=self.objective.name if self.objective else "elbo",
            K=self.objective.num_samples if self.objective else 1,
            evaluations=self.evaluations,
            latent=self.task.latent,
        )
        return {name: [{**columns, **row} for row in self.state[name]] for name in TABLES}

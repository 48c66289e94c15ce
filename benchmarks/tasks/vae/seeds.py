"""``task.parallel_seeds=N``: N seeds of one estimator trained side by side as one batched model.

Each seed is a ``Trainer`` of its own (a lane), built as its own run builds it: its model
initialized from its seed, its batches shuffled by its own stream, its probes and evaluations made
on its own parameters. Only the step is shared: the lanes' parameters stacked along a first axis
(``torch.func.stack_module_state``), the loss vmapped over them with each seed's random draws made
from its own stream (``benchmarks.streams``), one backward and one optimizer step for all (the
optimizers are elementwise, so each seed's slice moves as its own optimizer would move it). Each
seed's tables therefore equal its own run's up to float rounding. What it is for is a step bound
by kernel launches rather than arithmetic (a small model on a GPU), where N seeds launch about as
many kernels as one.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import nn

from benchmarks.measure import synchronize, unvalidated
from benchmarks.progress import Progress
from benchmarks.streams import SeedStreams
from benchmarks.tasks.base import Context, Result, Rows
from benchmarks.tasks.vae import data
from benchmarks.tasks.vae.models import VAE, step_loss
from benchmarks.tasks.vae.settings import OPTIMIZERS
from benchmarks.tasks.vae.train import FLUSH_EVERY, TABLES, Diverged, Trainer
from estimators.base import Estimator
from estimators.errors import ConfigError
from estimators.objectives import Objective

log = logging.getLogger(__name__)


class SeedLoss(nn.Module):
    """One seed's loss and mean objective on its batch (``step_loss``), as a module so that
    ``torch.func.functional_call`` runs it on one seed's parameters."""

    def __init__(
        self, model: VAE, estimator: Estimator, num_samples: int, objective: Objective | None
    ) -> None:
        super().__init__()
        self.model, self.estimator = model, estimator
        self.num_samples, self.objective = num_samples, objective

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, per_example, loss = step_loss(
            self.model, self.estimator, x, self.num_samples, objective=self.objective
        )
        return loss, per_example.detach().mean()


class SeedsTrainer:
    """Seeds ``context.seed`` to ``context.seed + N - 1`` of one stateless estimator, trained as
    one batched model; a seed whose step is not finite stops alone (its run's ``diverged``): that
    step's gradient and every later one reach its slice of the parameters as zero, so its slice
    stays finite and cannot make the others' step fail."""

    def __init__(
        self,
        task: DictConfig,
        load: Callable[[int], data.Dataset],
        estimator: Estimator,
        num_samples: int,
        context: Context,
        objective: Objective | None = None,
    ) -> None:
        self.task, self.context, self.estimator = task, context, estimator
        self.device, self.writer = context.device, context.writer
        self.lanes: list[Trainer] = []
        streams = []
        for offset in range(task.parallel_seeds):
            seed = context.seed + offset
            own = dataclasses.replace(context, seed=seed, writer=None)
            dataset = load(seed)
            if self.lanes:  # the seed binarizes the test set; the training set is one for all
                dataset = dataclasses.replace(dataset, train=self.lanes[0].dataset.train)
            lane = Trainer(task, dataset, estimator, num_samples, own, None, objective)
            lane.label = f"seed {seed}: "
            streams.append(SeedStreams.capture(self.device))  # where its own run's draws begin
            self.lanes.append(lane)
        self.streams = SeedStreams(streams, self.device)
        self.params, self.buffers = torch.func.stack_module_state([x.model for x in self.lanes])
        self.optimizer = OPTIMIZERS[task.optimizer](list(self.params.values()), lr=task.lr)
        self.loss = SeedLoss(self.lanes[0].model, estimator, num_samples, objective)
        self.diverged: dict[int, str] = {}  # lane index: the line its own run would print
        self.alive = torch.ones(len(self.lanes), dtype=torch.bool, device=self.device)

    def running(self) -> list[int]:
        """The lanes still training."""
        return [i for i in range(len(self.lanes)) if i not in self.diverged]

    def lead(self) -> Trainer:
        """The lane whose step and epoch the run's status and progress show: the first still
        training, else the one that trained longest."""
        running = self.running()
        if running:
            return self.lanes[running[0]]
        return max(self.lanes, key=lambda lane: lane.state["step"])

    def fit(self) -> Result:
        """Each lane's loop (``Trainer.fit``) in step: a batched step on each lane's batch, then
        each running lane's evaluation, and one checkpoint of all."""
        lead = self.lead()
        self.progress = Progress(lead.total_steps, "steps", initial=lead.state["step"])
        for lane in self.lanes:
            lane.progress = self.progress
        if lead.state["step"] == 0:
            self.probe_when_due()
        with unvalidated():
            while not self.done():
                self.train_epoch()
                for i in self.running():
                    self.lanes[i].state["epoch"] += 1
                self.evaluate()
                self.save()
        self.progress.close()
        return self.result()

    def done(self) -> bool:
        return not self.running() or self.lead().done()

    def train_epoch(self) -> None:
        orders = [lane.epoch_order() for lane in self.lanes]
        for indices in zip(*orders, strict=True):
            if self.done():
                break
            self.step(indices)
            if max((len(self.lanes[i].pending) for i in self.running()), default=0) >= FLUSH_EVERY:
                self.flush()
            self.probe_when_due()
        self.flush()

    def step(self, indices: tuple[torch.Tensor, ...]) -> None:
        """One timed step of every lane on its batch at ``indices``, kept pending in each running
        lane (as ``Trainer.step``)."""
        start = time.perf_counter()
        try:
            values = self.batched_step(indices)
        except Exception:
            self.flush()  # the seeds that diverged before it say so first
            raise
        seconds = time.perf_counter() - start
        for i in self.running():
            self.lanes[i].record(values[i], seconds)
        self.progress.update()

    def batched_step(self, indices: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``train_step`` for all lanes at once: the values [N, 4] (mean objective, loss,
        gradient norm, finite) of each seed's step, left on the device."""
        pairs = zip(self.lanes, indices, strict=True)
        x = torch.stack([lane.batch(index) for lane, index in pairs])
        with self.streams:
            losses, objectives = torch.func.vmap(self.seed_loss)(self.params, self.buffers, x)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        squares = sum(p.grad.flatten(1).pow(2).sum(1) for p in self.params.values())
        grad_norm = squares.sqrt()
        finite = torch.isfinite(losses) & torch.isfinite(grad_norm)
        keep = finite & self.alive  # a seed that diverged, now or before, stays where it was
        for p in self.params.values():
            p.grad.masked_fill_(~keep.view(-1, *[1] * (p.dim() - 1)), 0.0)
        self.optimizer.step()
        return torch.stack([objectives, losses.detach(), grad_norm, finite.to(losses.dtype)], 1)

    def seed_loss(self, params: dict, buffers: dict, x: torch.Tensor) -> tuple:
        prefixed = {f"model.{k}": v for k, v in (params | buffers).items()}
        return torch.func.functional_call(self.loss, prefixed, (x,))

    def flush(self) -> None:
        """Read every running lane's pending steps (one wait for the device, its time counted in
        each lane's); a lane that was not finite stops there, as its own run would."""
        wait = time.perf_counter()
        synchronize(self.device)
        wait = time.perf_counter() - wait
        for i in self.running():
            lane = self.lanes[i]
            if lane.pending:
                lane.state["seconds"] += wait
            try:
                lane.flush()
            except Diverged as stop:
                self.stop(i, str(stop))

    def stop(self, i: int, message: str) -> None:
        """Lane ``i`` diverged: say so on stderr, keep its tables, and freeze its slice (no
        gradient from now on, and no optimizer state left to move it)."""
        lane = self.lanes[i]
        self.diverged[i] = message
        self.alive[i] = False
        print(
            f"{self.estimator.name} seed {lane.seed}: {message}; stopping this seed",
            file=sys.stderr,
        )
        with torch.no_grad():
            for p in self.params.values():
                for value in self.optimizer.state[p].values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value[i] = 0.0

    def unstack(self, i: int) -> None:
        """Copy seed ``i``'s slice of the stacked parameters into its lane's own model."""
        with torch.no_grad():
            for name, p in self.lanes[i].model.named_parameters():
                p.copy_(self.params[name][i])

    def probe_when_due(self) -> None:
        for i in self.running():
            if self.lanes[i].probe_due():
                self.flush()
                if i in self.diverged:
                    continue
                self.unstack(i)
                self.lanes[i].probe_when_due()

    def evaluate(self) -> None:
        for i in self.running():
            self.unstack(i)
            self.lanes[i].evaluate()

    def save(self) -> None:
        """``checkpoint.pt`` after each epoch (where ``task.checkpoint``): the stacked parameters
        and optimizer, each lane's streams and tables; and the tables so far."""
        if not self.task.checkpoint:
            return
        self.writer.checkpoint(
            {
                "parallel_seeds": len(self.lanes),
                "params": {name: p.detach() for name, p in self.params.items()},
                "optimizer": self.optimizer.state_dict(),
                "streams": self.streams.states,
                "batches": [lane.batches.get_state() for lane in self.lanes],
                "states": [lane.state for lane in self.lanes],
                "diverged": self.diverged,
            }
        )
        for name, rows in self.tables().items():
            self.writer.table(name, rows)
        lead = self.lead().state
        self.writer.status("running", epoch=lead["epoch"], step=lead["step"], message="")

    def resume(self) -> None:
        """Continue from the checkpoint in the run folder (from step 0 where there is none)."""
        saved = self.writer.load_checkpoint(self.device)
        if saved is None:
            log.warning(
                "resume=true: no checkpoint in %s; starting from step 0", self.writer.run_dir
            )
            return
        n = len(self.lanes)
        if saved.get("parallel_seeds") != n:
            raise ConfigError(
                f"resume=true: the checkpoint in {self.writer.run_dir} was written by a run with "
                f"task.parallel_seeds={saved.get('parallel_seeds', 1)}; resume with that"
            )
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(saved["params"][name])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.streams.states = [[s.cpu() for s in states] for states in saved["streams"]]
        for lane, batches, state in zip(self.lanes, saved["batches"], saved["states"], strict=True):
            lane.batches.set_state(batches.cpu())
            lane.state = state
        self.diverged = saved["diverged"]
        for i in self.diverged:
            self.alive[i] = False
        lead = self.lead().state
        self.context.progress.update(epoch=lead["epoch"], step=lead["step"])

    def tables(self) -> dict[str, Rows]:
        """Each table with every seed's rows, seed after seed."""
        per_lane = [lane.tables() for lane in self.lanes]
        return {name: [row for tables in per_lane for row in tables[name]] for name in TABLES}

    def result(self) -> Result:
        """Completed where every seed completed, else diverged, naming each seed that did."""
        lead = self.lead().state
        message = "; ".join(
            f"seed {self.lanes[i].seed}: {line}" for i, line in sorted(self.diverged.items())
        )
        details = {"epoch": lead["epoch"], "step": lead["step"], "message": message}
        return Result(self.tables(), "diverged" if self.diverged else "completed", details)

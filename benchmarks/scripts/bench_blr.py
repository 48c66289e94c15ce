"""Speed of the Bayesian logistic regression task: its training step against plain PyTorch.

``python -m benchmarks.scripts.bench_blr`` times, in one process with the contenders interleaved
(medians over repeats), one training step of ``task=blr`` with ``reparam`` as its loop takes it
(the batch picked from a shuffled epoch, ``benchmarks.tasks.blr.task.train_step``, the cosine
decay's new learning rate; no evaluation) against a hand-written step of the same model: rsample 50
weights, the batch's log-likelihood, the closed-form KL, backward, an SGD step and the same
learning rate. Batch 32 of breast_cancer, 50 draws, as in the task's defaults. The contract:
the task's step costs at most 1.2x the hand-written one. ``--device cuda`` times the same on a
GPU; ``--threads`` (default 1) sets torch's CPU threads. Writes ``results/perf/blr_speed.csv``
(``blr_speed_cuda.csv`` on a GPU) and prints it.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F

import estimators
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.blr.task import breast_cancer, cosine_lr, train_step

BATCH, DRAWS, LR, STEPS = 32, 50, 1e-3, 5000


def main() -> None:
    # one thread: on tensors of 50 x 32 a second one only waits
    args = parse(parser(__doc__, "blr_speed", repeats=15, steps=200, device=True, threads=1))
    device = args.device
    torch.manual_seed(0)
    x, y = (t.to(device) for t in breast_cancer())
    n, dim = x.shape

    def parameters() -> tuple[torch.Tensor, torch.Tensor, torch.optim.SGD]:
        loc = torch.zeros(dim, device=device, requires_grad=True)
        log_scale = torch.zeros(dim, device=device, requires_grad=True)
        return loc, log_scale, torch.optim.SGD([loc, log_scale], lr=LR)

    def batches():
        """Endless batch indices, from shuffled epochs as the task's loop draws them."""
        while True:
            yield from torch.randperm(n, device=device).split(BATCH)

    reparam = estimators.build("reparam")
    task_loc, task_log_scale, task_opt = parameters()
    task_batches, task_state = batches(), {"step": 0}

    def task_step() -> None:  # the body of BLRTask.run's loop, without the evaluation
        index = next(task_batches)
        train_step(reparam, task_opt, task_loc, task_log_scale, x[index], y[index], n, DRAWS)
        task_state["step"] = task_state["step"] % STEPS + 1
        for group in task_opt.param_groups:
            group["lr"] = cosine_lr(LR, task_state["step"], STEPS)

    loc, log_scale, opt = parameters()
    plain_batches, plain_state = batches(), {"step": 0}

    def plain_step() -> None:
        index = next(plain_batches)
        xb, yb = x[index], y[index]
        scale = log_scale.exp()
        w = loc + scale * torch.randn(DRAWS, dim, device=device)
        log_lik = -F.binary_cross_entropy_with_logits(
            w @ xb.T, yb.expand(DRAWS, -1), reduction="none"
        )
        kl = (0.5 * (loc**2 + scale**2 - 1) - log_scale).sum()
        loss = kl - n * log_lik.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        plain_state["step"] = plain_state["step"] % STEPS + 1
        opt.param_groups[0]["lr"] = LR * math.cos(0.5 * math.pi * plain_state["step"] / STEPS)

    medians = interleaved_medians(
        {"task=blr training step (reparam)": task_step, "hand-written PyTorch step": plain_step},
        args.repeats,
        args.steps,
        device,
    )
    reference = medians["hand-written PyTorch step"]
    rows = [
        {
            "method": name,
            "batch": BATCH,
            "draws": DRAWS,
            "seconds": seconds,
            "ratio": seconds / reference,
        }
        for name, seconds in medians.items()
    ]
    write_report(pd.DataFrame(rows), args.out, device=device)


if __name__ == "__main__":
    main()

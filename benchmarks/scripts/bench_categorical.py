"""Speed of the categorical toy's measurement: each estimator in the harness against hand-written.

``python -m benchmarks.scripts.bench_categorical`` times, for each estimator serving
``task=categorical`` at each (D, C) of ``SETTINGS`` (cost abs_diff, k = 0.5, logits 0, float64),
the harness's whole measurement of n estimates (the task's batched gradient passes, its untimed
warm-up chunk and the streaming statistics, as ``task=categorical`` runs them), its gradient
passes alone, and a hand-written vectorized torch version of the estimator computing the same
estimates from the same draws: the full [n, D, C] gradient of the logits, written out
analytically (no autograd), f evaluated on the same one-hot points, in the same chunks.
Interleaved, medians of repeats, in one process, whose allocator keeps freed memory as the
runner's does. Writes ``results/perf/categorical_speed.csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pandas as pd
import torch
from omegaconf import OmegaConf

import estimators
from benchmarks.allocator import keep_freed_memory
from benchmarks.config import CONF_DIR
from benchmarks.measure import measure_estimates
from benchmarks.scripts.perf import interleaved_medians, parse, parser, write_report
from benchmarks.tasks.base import build
from benchmarks.tasks.toy import categorical
from estimators import carms as carms_estimator
from estimators.relaxed import conditional_perturbed

K = 0.5
"""The cost's k: f(x) = sum_d |index_d - k|, the toy's default abs_diff."""
CPU = torch.device("cpu")
SETTINGS = ((4, 3, 2**20, 65536), (200, 10, 2**14, 1024))
"""(D, C, estimates per timing, chunk): the task's default size and chunk, and the issue's
large case in chunks of 1,024 (the default 65,536 would hold gigabytes per chunk); n 16 chunks,
so the harness's untimed warm-up chunk adds 1/16 to its measurement."""


def cost(index: torch.Tensor) -> torch.Tensor:
    """f at class indices [..., D]: sum_d |index_d - k|."""
    return (index - K).abs().sum(-1)


def cost_grad(index: torch.Tensor, classes: int) -> torch.Tensor:
    """df/dx [..., D, C] at x with class indices ``index`` [..., D]: c'(index_d) times j."""
    j = torch.arange(classes, dtype=index.dtype)
    return torch.sign(index - K)[..., None] * j


def one_hot_draws(logits: torch.Tensor, n: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities [D, C], n one-hot draws [n, b, D, C]), as OneHotCategorical samples them."""
    probs = torch.softmax(logits, -1)
    d, c = logits.shape
    index = torch.multinomial(probs.expand(b, d, c).reshape(-1, c), n, True).T.reshape(n, b, d)
    return probs, torch.nn.functional.one_hot(index, c).to(logits.dtype)


def classes_of(x: torch.Tensor) -> torch.Tensor:
    """The class indices [..., D] of one-hot (or relaxed) x [..., D, C]."""
    return x @ torch.arange(x.shape[-1], dtype=x.dtype)


def softmax_vjp(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """J(p)^T g for p = softmax(s): the gradient with respect to s, p * (g - <p, g>)."""
    return p * (g - (p * g).sum(-1, keepdim=True))


def reinforce(logits: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """REINFORCE: the mean over n draws of f(z) (z - pi)."""
    probs, z = one_hot_draws(logits, n, b)
    return (cost(classes_of(z))[..., None, None] * (z - probs)).mean(0)


def reinforce_loo(logits: torch.Tensor, n: int, b: int, baseline: str = "loo") -> torch.Tensor:
    """REINFORCE with the leave-one-out baseline: the mean of (f_i - mean_{j!=i} f_j)(z_i - pi)."""
    probs, z = one_hot_draws(logits, n, b)
    fz = cost(classes_of(z))
    signal = fz - (fz.sum(0) - fz) / (n - 1)
    return (signal[..., None, None] * (z - probs)).mean(0)


def gumbel_draws(logits: torch.Tensor, n: int, b: int, temperature: float) -> torch.Tensor:
    """n relaxed samples softmax((logits + G) / tau) [n, b, D, C], as RelaxedOneHotCategorical."""
    eps = torch.finfo(logits.dtype).eps
    u = torch.rand(n, b, *logits.shape, dtype=logits.dtype).clamp(eps, 1 - eps)
    return torch.softmax((logits + -(-u.log()).log()) / temperature, -1)


def gumbel_softmax(logits: torch.Tensor, n: int, b: int, temperature: float) -> torch.Tensor:
    """Gumbel-softmax: J(y)^T f'(y) / tau at the relaxed sample y, averaged over draws."""
    y = gumbel_draws(logits, n, b, temperature)
    return softmax_vjp(y, cost_grad(classes_of(y), y.shape[-1])).mean(0) / temperature


def straight_through(logits: torch.Tensor, n: int, b: int, temperature: float) -> torch.Tensor:
    """Straight-through Gumbel-softmax: J(y)^T f'(hard(y)) / tau, averaged over draws."""
    y = gumbel_draws(logits, n, b, temperature)
    g = cost_grad(y.argmax(-1).to(y.dtype), y.shape[-1])
    return softmax_vjp(y, g).mean(0) / temperature


def reinmax(logits: torch.Tensor, n: int, b: int, temperature: float) -> torch.Tensor:
    """ReinMax: 2 J(pi_D)^T g - J(pi)^T g / 2, pi_D = (softmax(theta / tau) + D) / 2, g = f'(D)."""
    probs, d = one_hot_draws(logits, n, b)
    g = cost_grad(classes_of(d), d.shape[-1])
    pi_d = (torch.softmax(logits / temperature, -1) + d) / 2
    return (2 * softmax_vjp(pi_d, g) - 0.5 * softmax_vjp(probs, g)).mean(0)


def gst(logits: torch.Tensor, n: int, b: int, temperature: float, gap: float) -> torch.Tensor:
    """GST: J(s)^T f'(D) / tau, s = softmax(gapped logits / tau), D on top by at least the gap."""
    _, d = one_hot_draws(logits, n, b)
    top = logits.max(-1, keepdim=True).values
    s = torch.softmax(
        torch.where(d.bool(), top, torch.minimum(logits, top - gap)) / temperature, -1
    )
    return softmax_vjp(s, cost_grad(classes_of(d), d.shape[-1])).mean(0) / temperature


def top_k_outcomes(logits: torch.Tensor, n: int, b: int) -> tuple[torch.Tensor, ...]:
    """Gumbel-top-n over the C^D joint outcomes, as ``without_replacement.draw``: (probabilities
    of every outcome [N], the draws' one-hot values [n, b, D, C], their indices [n, b])."""
    d, c = logits.shape
    digits = torch.arange(c**d)[:, None] // c ** torch.arange(d - 1, -1, -1) % c  # [N, D]
    log_p = torch.log_softmax(logits, -1).gather(1, digits.T).sum(0)  # [N]
    gumbel = -torch.empty(c**d, b, dtype=logits.dtype).exponential_().log()
    index = (log_p[:, None] + gumbel).topk(n, dim=0).indices
    return log_p.exp(), torch.nn.functional.one_hot(digits[index], c).to(logits.dtype), index


def sum_and_sample(logits: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """Sum-and-sample: sum_j w_j f(s_j) (s_j - pi), w = p(s_j) for j < n, the rest's mass last."""
    p_all, z, index = top_k_outcomes(logits, n, b)
    w = p_all[index]
    w[-1] = p_all.sum() - w[:-1].sum(0)
    coef = w * cost(classes_of(z))
    return (coef[..., None, None] * (z - torch.softmax(logits, -1))).sum(0)


def unordered_set(logits: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """The unordered set estimator at n = 2 in closed form: (f_a - f_b) / (1/(1-p_a) + 1/(1-p_b))
    times (a - pi), and the same for b."""
    assert n == 2, "written out for two draws"
    p_all, z, index = top_k_outcomes(logits, n, b)
    fz, rest = cost(classes_of(z)), p_all.sum() - p_all[index]
    coef = (fz - fz.flip(0)) / (1 / rest).sum(0)
    return (coef[..., None, None] * (z - torch.softmax(logits, -1))).sum(0)


def indecater(logits: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """IndeCateR: J(pi)^T m, m[d, k] the mean over the n draws of f at the draw with variable d
    set to class k (all D C n one-hot points evaluated, as the estimator does)."""
    probs, x = one_hot_draws(logits, n, b)
    d, c = logits.shape
    own = torch.eye(d, dtype=torch.bool)[:, None, None, None, :, None]  # [D, 1, 1, 1, D, 1]
    classes = torch.eye(c, dtype=x.dtype)[None, :, None, None, None, :]  # [1, C, 1, 1, 1, C]
    m = cost(classes_of(torch.where(own, classes, x))).mean(2)  # [D, C, b]
    return softmax_vjp(probs, m.permute(2, 0, 1))


# Gumbel-Rao's and CARMS's hand-written versions draw with the estimators' own functions (the
# conditional Gumbels; the coupled draws and their pair weights), so that they take the same
# draws: their ratios price the harness's autograd and distributions, not those functions.


def gumbel_rao(
    logits: torch.Tensor, n: int, b: int, temperature: float, rb_samples: int
) -> torch.Tensor:
    """Gumbel-Rao: J(y_k)^T f'(D) / tau averaged over K perturbed logits y drawn given the draw D
    (the estimator's conditional draw, ``conditional_perturbed``), then over the draws."""
    _, d = one_hot_draws(logits, n, b)
    perturbed = conditional_perturbed(torch.log_softmax(logits, -1), d, (rb_samples,))
    y = torch.softmax(perturbed / temperature, -1)  # [K, n, b, D, C]
    g = cost_grad(classes_of(d), d.shape[-1])
    return softmax_vjp(y, g).mean((0, 1)) / temperature


def carms(logits: torch.Tensor, n: int, b: int) -> torch.Tensor:
    """CARMS: sum_i w_i (z_i - pi), w_i = 1/(n(n-1)) sum_{j != i} r(z_i, z_j) (f_i - f_j), from
    the estimator's coupled draws and pair probabilities."""
    probs = torch.softmax(logits, -1).expand(b, *logits.shape)
    z = carms_estimator.coupled_draws(probs, n)  # [n, b, D] classes
    fz = cost(z.to(logits.dtype))  # [n, b]
    w = carms_estimator.carms_weights(probs, z, fz[..., None])  # [n, b, D]
    one_hot = torch.nn.functional.one_hot(z, logits.shape[-1]).to(logits.dtype)
    return (w[..., None] * (one_hot - probs)).sum(0)


Hand = Callable[..., torch.Tensor]
CASES: list[tuple[str, dict, int, Hand]] = [
    ("reinforce", {}, 1, reinforce),
    ("reinforce_baseline", {"baseline": "loo"}, 2, reinforce_loo),
    ("gumbel_softmax", {"temperature": 0.5}, 1, gumbel_softmax),
    ("straight_through", {"temperature": 0.5}, 1, straight_through),
    ("reinmax", {"temperature": 1.0}, 1, reinmax),
    ("gst", {"temperature": 1.0, "gap": 1.0}, 1, gst),
    ("sum_and_sample", {}, 2, sum_and_sample),
    ("unordered_set", {}, 2, unordered_set),
    ("indecater", {}, 1, indecater),
    ("rao_blackwell_st", {"temperature": 0.5, "rb_samples": 10}, 1, gumbel_rao),
    ("carms", {}, 2, carms),
]
"""(estimator, its options (the conf defaults), num_samples (the task's minimum, 2 for the
estimators without replacement, whose 1 is REINFORCE), the hand-written version)."""


CHUNK_BYTES = 2**32
"""The most memory one chunk's points of f may take (float64): IndeCateR's D C modified copies
of every draw, [D, C] each, are 32 GB a chunk of 1,024 at D = 200, C = 10, so it runs at the
small setting only."""


def fits(est: estimators.Estimator, dist, num_samples: int, chunk: int) -> bool:
    """Whether a chunk's points of f (evaluations x event size x chunk) fit ``CHUNK_BYTES``."""
    points = est.evaluations(dist, num_samples) * dist.event_shape.numel() * chunk
    return points * 8 <= CHUNK_BYTES


def toy(dim: int, categories: int) -> categorical.CategoricalToy:
    """The categorical toy task at (D, C), its other settings the defaults."""
    cfg = OmegaConf.load(CONF_DIR / "task/categorical.yaml")
    cfg.dim, cfg.categories = dim, categories
    return build(cfg)


def harness(task, est, num_samples: int, n: int, chunk: int, statistics: bool) -> None:
    """The task's measurement of n estimates in chunks, or its gradient passes alone."""
    f, logits = categorical.total_cost("abs_diff", K), task.initial(CPU)
    chunk_of = lambda b: task.gradient_estimates(est, f, logits, num_samples, b)  # noqa: E731
    if statistics:
        measure_estimates(chunk_of, task.params, n, chunk, CPU)
    else:
        for lo in range(0, n, chunk):
            chunk_of(min(chunk, n - lo))


def hand_written(hand: Hand, options: dict, logits, num_samples: int, n: int, chunk: int) -> None:
    """The hand-written estimator's n full gradients, in the same chunks."""
    for lo in range(0, n, chunk):
        hand(logits, num_samples, min(chunk, n - lo), **options)


MEASUREMENT, HAND = "harness measurement (gradients + statistics)", "hand-written vectorized torch"


def timings(task, case: tuple, n: int, chunk: int, repeats: int) -> dict[str, float]:
    """Median seconds of the harness's measurement, its gradient passes and the hand-written
    version, for one estimator at one setting, interleaved."""
    name, options, num_samples, hand = case
    est, logits = estimators.build(name, **options), task.initial(CPU)[0]
    torch.manual_seed(0)
    return interleaved_medians(
        {
            MEASUREMENT: partial(harness, task, est, num_samples, n, chunk, True),
            "harness gradient passes": partial(harness, task, est, num_samples, n, chunk, False),
            HAND: partial(hand_written, hand, options, logits, num_samples, n, chunk),
        },
        repeats,
        warmup=1,
    )


def main() -> None:
    p = parser(__doc__, "categorical_speed", repeats=5)
    p.add_argument("--estimators", help="comma-separated names (default: all)")
    args = parse(p)
    keep_freed_memory()  # as the runner does
    only = args.estimators.split(",") if args.estimators else [case[0] for case in CASES]
    rows = []
    for dim, categories, n, chunk in SETTINGS:
        task = toy(dim, categories)
        dist = task.distribution(task.initial(CPU)[0])
        for case in CASES:
            est = estimators.build(case[0], **case[1])
            if case[0] not in only or not est.supports(dist) or not fits(est, dist, case[2], chunk):
                continue
            medians = timings(task, case, n, chunk, args.repeats)
            label = est.label(est.options())
            for method, seconds in medians.items():
                ratio = seconds / medians[HAND]
                rows.append(
                    (label, dim, categories, case[2], n, chunk, method, seconds * 1e5 / n, ratio)
                )
            print(f"{label} D={dim} C={categories}: {medians[MEASUREMENT] / medians[HAND]:.2f}x")
    columns = ["estimator", "D", "C", "num_samples", "n", "chunk", "method"]
    columns += ["seconds_per_1e5_estimates", "ratio_to_hand_written"]
    write_report(pd.DataFrame(rows, columns=columns), args.out)


if __name__ == "__main__":
    main()

"""Streaming moments and the statistics of a set of gradient estimates.

Chunks of estimates are reduced to their count, mean and central sums of powers 2 to 4, and
merged with the pairwise formulas of Pebay (2008), so memory does not grow with the number of
estimates. The fourth moment gives a distribution-free (asymptotic) confidence interval for the
variance, which matters because score-function estimates are far from Gaussian.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Z_95 = 1.959963984540054  # two-sided 95% standard-normal quantile


@dataclass(frozen=True)
class Moments:
    """Count, mean and central sums M_p = sum (x - mean)^p, p = 2, 3, 4, of a sample."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    @classmethod
    def of(cls, x: torch.Tensor) -> Moments:
        """The moments of the values of ``x``.

        Sums run in ``x``'s own floating dtype (torch's cascaded sums keep float32's relative
        error near 1e-7, far below any statistical error here, at a tenth of float64's cost),
        again in float64 where a float32 fourth power overflows (finite values above about 1e9);
        merging is in float64.
        """
        x = x.detach().reshape(-1)
        if not x.is_floating_point():
            x = x.double()
        mean = x.mean()
        d = x - mean
        d2 = d * d
        sums = torch.stack([mean, d.dot(d), d2.dot(d), d2.dot(d2)])
        if x.dtype != torch.float64 and not sums.isfinite().all() and x.isfinite().all():
            return cls.of(x.double())
        return cls(x.numel(), *sums.tolist())

    def merge(self, other: Moments) -> Moments:
        """The moments of the union of the two samples."""
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        na, nb = self.n, other.n
        n = na + nb
        delta = other.mean - self.mean
        m2 = self.m2 + other.m2 + delta**2 * na * nb / n
        m3 = (
            self.m3
            + other.m3
            + delta**3 * na * nb * (na - nb) / n**2
            + 3 * delta * (na * other.m2 - nb * self.m2) / n
        )
        m4 = (
            self.m4
            + other.m4
            + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
            + 6 * delta**2 * (na * na * other.m2 + nb * nb * self.m2) / n**2
            + 4 * delta * (na * other.m3 - nb * self.m3) / n
        )
        return Moments(n, self.mean + delta * nb / n, m2, m3, m4)

    @property
    def var(self) -> float:
        """The unbiased sample variance."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    def var_ci(self, z: float = Z_95) -> tuple[float, float]:
        """Asymptotic confidence interval for the variance from the fourth central moment.

        Var(s^2) ~ (mu_4 - sigma^4 (n - 3) / (n - 1)) / n, which holds for any law with a finite
        fourth moment; the chi-square interval would be far too narrow for heavy tails.
        """
        s2 = self.var
        se = self.var_se
        return s2 - z * se, s2 + z * se

    @property
    def var_se(self) -> float:
        """Standard error of the sample variance."""
        n = self.n
        if n < 4:
            return math.nan
        mu4 = self.m4 / n
        return math.sqrt(max(mu4 - self.var**2 * (n - 3) / (n - 1), 0.0) / n)


def gradient_statistics(m: Moments, exact_grad: float, seconds_per_estimate: float) -> dict:
    """The summary of ``m.n`` independent estimates of a gradient whose exact value is known."""
    var = m.var
    lo, hi = m.var_ci()
    bias = m.mean - exact_grad
    se = math.sqrt(var / m.n)
    # Below float32's resolution a difference is rounding, not bias (a zero-variance estimator,
    # such as DisARM at theta = 0 in one dimension, must not get an enormous z-score from it).
    if abs(bias) <= 1e-6 * (abs(m.mean) + abs(exact_grad)):
        z = 0.0
    elif se > 0:
        z = bias / se
    else:
        z = math.copysign(math.inf, bias)
    return {
        "grad_mean": m.mean,
        "grad_var": var,
        "grad_var_lo": lo,
        "grad_var_hi": hi,
        "exact_grad": exact_grad,
        "bias": bias,
        "z_score": z,
        "mse": bias**2 + m.m2 / m.n,
        "snr": abs(m.mean) / math.sqrt(var) if var > 0 else math.nan,
        "time_per_estimate_s": seconds_per_estimate,
        "work_normalized_var": var * seconds_per_estimate,
    }


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_estimates(
    estimate_chunk: Callable[[int], Sequence[torch.Tensor]],
    names: Sequence[str],
    n_estimates: int,
    chunk_size: int,
    device: torch.device,
    on_chunk: Callable[[int], None] = lambda batch: None,
) -> tuple[dict[str, Moments], float]:
    """Streaming moments of ``n_estimates`` estimates of each named gradient, and the wall-clock
    seconds per estimate; ``estimate_chunk(b)`` returns b estimates of each, in ``names``' order,
    and ``on_chunk(b)`` hears of each measured chunk, outside the timing (progress).

    One untimed warm-up chunk comes first: it warms caches and the allocator and gives a
    moving-average baseline its first value, so every measured chunk sees the steady state.
    """
    chunk = min(chunk_size, n_estimates)
    estimate_chunk(chunk)
    moments = {name: Moments() for name in names}
    seconds = 0.0
    done = 0
    while done < n_estimates:
        batch = min(chunk, n_estimates - done)
        synchronize(device)
        start = time.perf_counter()
        grads = estimate_chunk(batch)
        synchronize(device)
        seconds += time.perf_counter() - start
        for name, g in zip(names, grads, strict=True):
            moments[name] = moments[name].merge(Moments.of(g))
        done += batch
        on_chunk(batch)
    return moments, seconds / n_estimates

"""Streaming moments and the statistics of a set of gradient estimates.

Chunks of estimates are reduced to their count, mean and central sums of powers 2 to 4, and merged
with the pairwise formulas of Pebay (2008), so memory does not grow with the number of estimates.
The fourth moment gives a distribution-free (asymptotic) confidence interval for the variance,
which matters because score-function estimates are far from Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
        sums = [t.item() for t in (mean, d.dot(d), d2.dot(d), d2.dot(d2))]
        if x.dtype != torch.float64 and not all(map(math.isfinite, sums)) and x.isfinite().all():
            return cls.of(x.double())
        return cls(x.numel(), *sums)

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


@dataclass(frozen=True)
class CoordinateMoments:
    """Sums about a fixed centre c of a stream of vector estimates g, whose coordinates fall into
    ``parts`` (parameter tensors). With u = g - c, y_p = ||u_p||^2 per part and y = ||u||^2, one
    matrix of sums S = X Y' holds everything, X's rows being 1, y and each y_p and Y's u and u^2
    (coordinate by coordinate): each coordinate's mean and variance, and each group's (a part,
    or all coordinates) summed variance tr Cov(g) = E||g - E g||^2 with its standard error. c is
    the mean of a separate warm-up chunk, so that u is small and the sums lose no digits to
    cancellation."""

    n: int
    centre: torch.Tensor
    parts: tuple[slice, ...]
    index: torch.Tensor
    """Each coordinate's part (``part_index``)."""
    sums: torch.Tensor
    """float64 [P + 2, 2 D]: S = X Y' summed over the estimates."""

    @classmethod
    def of(
        cls,
        rows: torch.Tensor,
        centre: torch.Tensor,
        parts: tuple[slice, ...],
        index: torch.Tensor | None = None,
    ) -> CoordinateMoments:
        """The sums of a chunk of estimates laid out as ``rows`` [D, n], row i holding coordinate
        i of every estimate: a few passes over it and one matrix product, however many parts
        (``index``: ``part_index(parts)``, passed where it is at hand)."""
        if index is None:
            index = part_index(parts, rows.device)
        d, n = rows.shape
        y = rows.new_empty(2 * d, n)
        torch.sub(rows.detach(), centre.unsqueeze(1), out=y[:d])
        torch.mul(y[:d], y[:d], out=y[d:])
        x = rows.new_empty(len(parts) + 2, n)
        x[0] = 1.0
        if len(parts) == d:  # a coordinate a part: each y_p is its u^2
            x[2:].copy_(y[d:])
        else:
            x[2:].zero_().index_add_(0, index, y[d:])
        torch.sum(x[2:], 0, out=x[1])
        sums = x @ y.T
        if not sums.isfinite().all() and rows.isfinite().all():
            return cls.of(rows.double(), centre.double(), parts, index)  # float32 overflowed
        return cls(n, centre, parts, index, sums.double())

    @classmethod
    def about(cls, warmup: torch.Tensor, parts: tuple[slice, ...]):
        """The reduction of chunks about the mean of a separate ``warmup`` chunk (the summary
        that ``measure_estimates`` takes)."""
        centre = warmup.detach().mean(1)
        index = part_index(parts, warmup.device)
        return lambda rows: cls.of(rows, centre, parts, index)

    def merge(self, other: CoordinateMoments) -> CoordinateMoments:
        """The sums of the union of the two streams (about the same centre)."""
        return replace(self, n=self.n + other.n, sums=self.sums + other.sums)

    def at(self, group: int) -> slice:
        """The coordinates of group ``group``: a part, or all of them for the last."""
        return self.parts[group] if group < len(self.parts) else slice(None)

    def mean(self, group: int) -> torch.Tensor:
        """The mean of each coordinate of group ``group``."""
        d = len(self.centre)
        return (self.centre.double() + self.sums[0, :d] / self.n)[self.at(group)]

    def var(self, group: int) -> torch.Tensor:
        """The unbiased sample variance of each coordinate of group ``group``."""
        d = len(self.centre)
        u, u2 = self.sums[0, :d][self.at(group)], self.sums[0, d:][self.at(group)]
        return (u2 - u**2 / self.n).clamp(min=0.0) / (self.n - 1)

    def total_var_se(self, group: int) -> float:
        """Standard error of the group's summed variance, sqrt(Var(||g - E g||^2) / n). With
        e = E u, ||g - E g||^2 = y - 2 u.e + ||e||^2, whose variance is Var(y) - 4 Cov(y, u).e
        + 4 e'Cov(g)e; the last term, small as the centre's miss e is, is taken at its bound
        (sum_i |e_i| sd_i)^2: exact for one coordinate, slightly conservative for more."""
        at, n, d = self.at(group), self.n, len(self.centre)
        row = self.sums[1] if group == len(self.parts) else self.sums[2 + group]  # y's X row
        e = self.sums[0, :d][at] / n
        y_mean = self.sums[0, d:][at].sum() / n  # sum y = sum over the group of sum u^2
        y_var = (row[d:][at].sum() - n * y_mean**2) / (n - 1)  # sum y^2 = sum y u^2
        cov = row[:d][at] / n - y_mean * e
        bound = e.abs().dot(self.var(group).sqrt()) ** 2
        return math.sqrt(max((y_var - 4 * cov.dot(e) + 4 * bound).item(), 0.0) / n)


def part_index(parts: tuple[slice, ...], device: torch.device) -> torch.Tensor:
    """Each coordinate's part, for ``parts`` that tile the coordinates in order."""
    return torch.cat(
        [torch.full((p.stop - p.start,), i, device=device) for i, p in enumerate(parts)]
    )


Summary = Moments | CoordinateMoments
"""A stream of one gradient's estimates, reduced."""


def tensor_statistics(
    m: CoordinateMoments,
    group: int,
    target: torch.Tensor | None,
    target_se: torch.Tensor | None,
    seconds_per_estimate: float,
) -> dict:
    """The summary of ``m.n`` estimates of group ``group`` of a gradient (a parameter tensor,
    flattened) against ``target`` (the exact gradient, or an estimated reference with standard
    errors ``target_se``; None: no bias columns): its columns are ``gradient_statistics``'s for
    one coordinate, and for more, the sum of the coordinates' variances with its interval, the
    norms of the mean and the bias, the mean over coordinates of |mean| / sd as SNR, and
    ``bias_p``: the two-sided p-value of the largest coordinate's |z|, Bonferroni-corrected over
    the coordinates (valid however they are correlated, conservative where they are)."""
    mean, var = m.mean(group), m.var(group)
    total = var.sum().item()
    se = m.total_var_se(group)
    sd = var.sqrt()
    moving = sd > 0
    scalar = mean.numel() == 1
    row = {
        "numel": mean.numel(),
        "grad_mean": mean.item() if scalar else math.nan,
        "grad_mean_norm": mean.norm().item(),
        "grad_var": total,
        "grad_var_lo": total - Z_95 * se,
        "grad_var_hi": total + Z_95 * se,
        "snr": (mean.abs()[moving] / sd[moving]).mean().item() if moving.any() else math.nan,
        "time_per_estimate_s": seconds_per_estimate,
        "work_normalized_var": total * seconds_per_estimate,
    }
    if target is None:
        return row
    target = target.detach().double().reshape(-1)
    bias = mean - target
    z = bias / (var / m.n + (0.0 if target_se is None else target_se.double() ** 2)).sqrt()
    # Below float32's resolution a difference is rounding, not bias (as gradient_statistics).
    z[bias.abs() <= 1e-6 * (mean.abs() + target.abs())] = 0.0
    z_max = z.abs().max().item()  # a bias where the standard error is 0: inf
    row.update(
        exact_grad=target.item() if scalar else math.nan,
        bias=bias.item() if scalar else math.nan,
        bias_norm=bias.norm().item(),
        z_score=z.item() if scalar else math.nan,
        bias_p=min(1.0, z.numel() * math.erfc(z_max / math.sqrt(2))),
        mse=(bias**2).sum().item() + var.sum().item() * (m.n - 1) / m.n,
    )
    return row


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

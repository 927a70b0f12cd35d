"""Confidence intervals for figures measured in repeated trials, and what a sample can resolve.

Shared machines are noisy: one run's figure can be off by 2x. A figure that people cite is therefore measured in
rounds (each round runs every topology once, in a random order), and reported as the median over rounds with a
distribution-free confidence interval for that median (order statistics, as in Le Boudec, *Performance Evaluation of
Computer and Communication Systems*, ch. 2). A ratio to a baseline is computed per round, from the two trials of the
same round, and its interval is that of the per-round ratios (paired, as Kalibera & Jones recommend).

With few rounds an order-statistic interval cannot reach 95%: with n rounds the widest one, (min, max), covers the
median with probability 1 - 2 / 2**n (75% for 3 rounds, 94% for 5, 97% for 6). The interval then is (min, max) and
:attr:`Estimate.coverage` says what it covers; nothing pretends to 95%.

A percentile of a latency sample is shown only where the sample resolves it: the upper end of its 95% order-statistic
interval must be a request of the sample (:func:`percentile_interval`). p99 of 215 requests is not resolved: it would
be the third-slowest request, and its interval runs past the slowest.

The binomial and beta quantiles come from scipy (``scipy.stats``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import beta, binom

CONFIDENCE: Final = 0.95
#: A relative half-width above which an interval is called wide and the user is told how to narrow it.
WIDE: Final = 0.10


@dataclass(frozen=True, slots=True)
class Estimate:
    """The median over ``n`` values with an interval that covers the true median with probability ``coverage``.

    NaN everywhere when there is no value.
    """

    value: float
    low: float
    high: float
    n: int
    coverage: float

    @property
    def relative_halfwidth(self) -> float:
        """Half the interval's width over the median (NaN when undefined)."""
        if self.n == 0 or not self.value:
            return math.nan
        return (self.high - self.low) / 2 / abs(self.value)

    @property
    def wide(self) -> bool:
        """Whether the interval is wider than +-:data:`WIDE` of the median (or not known)."""
        width = self.relative_halfwidth
        return math.isnan(width) or width > WIDE

    def text(self, spec: str = ".3g") -> str:
        """``"2.8 (2.6-3.0)"``: the median and its interval, formatted with ``spec``."""
        if self.n == 0:
            return "-"
        if self.n == 1:
            return format(self.value, spec)
        return f"{self.value:{spec}} ({self.low:{spec}}–{self.high:{spec}})"


NOTHING: Final = Estimate(math.nan, math.nan, math.nan, 0, math.nan)


def _clean(values: Iterable[float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.fromiter(values, dtype=np.float64) if isinstance(values, Iterable) else np.asarray(values, np.float64)
    return np.sort(array[np.isfinite(array)])


def median_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """1-based ranks (lo, hi) of the order statistics that bound the median of ``n`` values, and their coverage.

    The narrowest symmetric pair whose coverage reaches ``confidence``; (1, n) when none does.
    """
    if n < 1:
        raise ValueError("no values")
    best = (1, n, 1.0 - 2.0 * 0.5**n)
    for lo in range(1, n // 2 + 1):
        hi = n + 1 - lo
        coverage = float(binom.cdf(hi - 1, n, 0.5) - binom.cdf(lo - 1, n, 0.5))
        if coverage < confidence:
            break
        best = (lo, hi, coverage)
    return best


def median_interval(values: Iterable[float] | npt.ArrayLike, confidence: float = CONFIDENCE) -> Estimate:
    """The median of ``values`` (NaNs dropped) with its distribution-free interval (see the module docstring)."""
    ordered = _clean(values)
    n = len(ordered)
    if n == 0:
        return NOTHING
    lo, hi, coverage = median_ranks(n, confidence)
    return Estimate(float(np.median(ordered)), float(ordered[lo - 1]), float(ordered[hi - 1]), n, coverage)


def paired_ratio(
    numerators: Iterable[float] | npt.ArrayLike,
    denominators: Iterable[float] | npt.ArrayLike,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """The ratio numerator / denominator per round (same index = same round), as a median with its interval.

    Rounds where either side is missing (NaN) or the denominator is 0 are left out.
    """
    top = np.asarray(numerators, dtype=np.float64)
    bottom = np.asarray(denominators, dtype=np.float64)
    if top.shape != bottom.shape:
        raise ValueError(f"paired values need the same rounds: {top.shape} != {bottom.shape}")
    usable = np.isfinite(top) & np.isfinite(bottom) & (bottom != 0)
    return median_interval(top[usable] / bottom[usable], confidence)


def over_rounds(
    rounds: pd.Series, baseline: pd.Series | None, confidence: float = CONFIDENCE
) -> tuple[Estimate, Estimate]:
    """A figure's values by round (a Series indexed by round) as their median with its interval, and their ratio to
    ``baseline``'s values (indexed the same way) paired round by round; the ratio is :data:`NOTHING` without a
    baseline. Rounds present on one side only are left out of the ratio."""
    value = median_interval(rounds.to_numpy(dtype=np.float64), confidence)
    if baseline is None:
        return value, NOTHING
    paired = pd.concat([rounds, baseline], axis=1, keys=["mine", "base"])
    return value, paired_ratio(paired["mine"].to_numpy(), paired["base"].to_numpy(), confidence)


def percentile_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks bounding the ``q``-th percentile (0-100) of ``n`` values, or None if ``n`` cannot resolve it.

    The ranks are binomial quantiles: the number of values below the true percentile is Binomial(n, q/100).
    """
    if n < 1 or not 0 < q < 100:
        return None
    share = q / 100
    tail = (1 - confidence) / 2
    lo = int(binom.ppf(tail, n, share))  # values certainly below: the interval starts just above them
    hi = int(binom.ppf(1 - tail, n, share)) + 1
    if lo < 1 or hi > n:
        return None
    return lo, hi


def resolves(n: int, q: float, confidence: float = CONFIDENCE) -> bool:
    """Whether ``n`` values resolve the ``q``-th percentile: both ends of its interval are values of the sample."""
    return percentile_ranks(n, q, confidence) is not None


def percentile_interval(
    values: Iterable[float] | npt.ArrayLike, q: float, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The interval of the ``q``-th percentile of ``values`` (order statistics), or None where they cannot resolve
    it."""
    ordered = _clean(values)
    ranks = percentile_ranks(len(ordered), q, confidence)
    if ranks is None:
        return None
    return float(ordered[ranks[0] - 1]), float(ordered[ranks[1] - 1])


def smallest_resolving_sample(q: float, confidence: float = CONFIDENCE) -> int:
    """The fewest values that resolve the ``q``-th percentile (e.g. about 460 for p99 at 95%)."""
    n = max(1, math.ceil(1 / (1 - q / 100)))
    while not resolves(n, q, confidence):
        n = max(n + 1, math.ceil(n * 1.05))
    lo = max(1, n // 2)
    while lo < n:  # the first n that resolves, by bisection over [n/2, n]
        mid = (lo + n) // 2
        if resolves(mid, q, confidence):
            n = mid
        else:
            lo = mid + 1
    return n


def success_upper_bound(successes: int, requests: int, confidence: float = CONFIDENCE) -> float:
    """The upper end of the two-sided Clopper-Pearson interval of a success ratio (1.0 when all succeeded or none
    was sent): the ratio is below ``HEALTHY`` with confidence only when this bound is."""
    if requests <= 0 or successes >= requests:
        return 1.0
    return float(beta.ppf(1 - (1 - confidence) / 2, successes + 1, requests - successes))


def success_lower_bound(successes: int, requests: int, confidence: float = CONFIDENCE) -> float:
    """The lower end of the two-sided Clopper-Pearson interval of a success ratio (0.0 when nothing was sent or
    nothing succeeded)."""
    if requests <= 0 or successes <= 0:
        return 0.0
    return float(beta.ppf((1 - confidence) / 2, successes, requests - successes + 1))


def resolved_percentile(
    values: Iterable[float] | npt.ArrayLike, candidates: Sequence[float] = (99.0, 90.0, 50.0)
) -> tuple[float, tuple[float, float]] | None:
    """The highest of ``candidates`` that ``values`` resolve, with its interval; None when none is resolved."""
    ordered = _clean(values)
    for q in candidates:
        interval = percentile_interval(ordered, q)
        if interval is not None:
            return q, interval
    return None

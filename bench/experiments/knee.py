"""The sustainable throughput from every probe near the knee: one fit of log p99 against log rate, and its interval
by a bootstrap over those probes.

The knee's rounds each estimate where p99 crosses the SLO from their own two probes (``crossing`` in the network
experiment). A quick probe holds a few hundred to a thousand requests, so its p99 is one of its slowest requests and
moves by a factor of 1.5 from probe to probe at one rate; where p99 rises slowly with the rate (the microservices:
about the 3.5th power of the rate near the knee), such a probe moves the crossing by 10% and more, and the median of
three or four rounds still moved the sustainable-throughput ratio by ±14% from run to run. Every probe the search and
the rounds made near the knee says something about the same curve: a straight line fitted to all of them (log p99
against log rate, least squares) averages their noise, and its crossing of the SLO is the estimate
(``docs/method.md`` gives the simulation and the runs that chose it).

Only probes within :data:`WINDOW` of the rounds' median crossing enter the fit: far below the knee p99 hardly
depends on the rate, far above it is the queue's growth over the probe's length, and neither lies on the line near
the knee. A probe's p99 is taken on the side of the SLO its verdict says (a probe that failed on errors with a p99
within the SLO counts as at the SLO), so that the fit agrees with the judgement of each probe. The interval is a
percentile bootstrap over the probes (``scipy.stats.bootstrap``); a ratio of two topologies resamples each one's
probes on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import bootstrap

from bench.common.intervals import CONFIDENCE, NOTHING, Estimate

#: How far from the rounds' median crossing (a factor of rate, either way) a probe still enters the fit.
WINDOW: Final = 1.35
#: Bootstrap resamples of the probes (the interval's ends move by about 1% between seeds at this count).
RESAMPLES: Final = 999
#: The phases of the network experiment whose runs are probes of the knee.
PROBE_PHASES: Final = ("sweep", "knee")

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Probes:
    """The probes of one topology near its knee: log rate (req/s) and log p99 (seconds), and the SLO's log p99."""

    log_rate: Floats
    log_p99: Floats
    log_slo: float
    center: float

    @property
    def n(self) -> int:
        return len(self.log_rate)


def probes_near(steps: pd.DataFrame, topology: str, center: float, slo_p99: float, error_budget: float) -> Probes:
    """The probes of ``topology`` (rows of the network experiment's ``steps``) within :data:`WINDOW` of ``center``
    (req/s), each p99 on the side of ``slo_p99`` (seconds) that its verdict (p99 and ``error_budget``) gives."""
    rows = steps[(steps["topology"] == topology) & steps["phase"].isin(PROBE_PHASES)]
    rate = rows["target_rate"].to_numpy(dtype=np.float64)
    p99 = rows["p99"].to_numpy(dtype=np.float64)
    errors = rows["error_rate"].to_numpy(dtype=np.float64)
    usable = np.isfinite(rate) & (rate > 0) & np.isfinite(p99) & (p99 > 0)
    if not (math.isfinite(center) and center > 0):
        usable[:] = False  # no rounds' crossing to centre the window on
    usable &= np.abs(np.log(np.where(usable, rate, 1.0) / (center if usable.any() else 1.0))) <= math.log(WINDOW)
    log_slo = math.log(slo_p99)
    met = (p99 <= slo_p99) & (errors < error_budget)
    log_p99 = np.log(np.where(usable, p99, 1.0))
    log_p99 = np.where(met, np.minimum(log_p99, log_slo), np.maximum(log_p99, log_slo))
    return Probes(np.log(rate[usable]), log_p99[usable], log_slo, center)


def crossing(log_rate: Floats, log_p99: Floats, log_slo: float, center: float) -> float:
    """Where the least-squares line of ``log_p99`` on ``log_rate`` reaches ``log_slo`` (req/s), kept within the rates
    probed; ``center`` where no rising line can be fitted (fewer than three probes at two rates or more, or p99 not
    rising with the rate)."""
    if len(log_rate) < 3 or np.ptp(log_rate) == 0:
        return center
    slope, intercept = np.polyfit(log_rate, log_p99, 1)
    if not slope > 0:
        return center
    at = (log_slo - intercept) / slope
    return math.exp(min(max(at, float(log_rate.min())), float(log_rate.max())))


def fitted(probes: Probes) -> float:
    """The crossing of the line fitted to ``probes`` (NaN without probes)."""
    if probes.n == 0:
        return math.nan
    return crossing(probes.log_rate, probes.log_p99, probes.log_slo, probes.center)


def _resampled(probes: Probes) -> Callable[[npt.NDArray[np.intp]], float]:
    return lambda index: crossing(probes.log_rate[index], probes.log_p99[index], probes.log_slo, probes.center)


def _interval(
    data: tuple[npt.NDArray[np.intp], ...], statistic: Callable[..., float], seed: int
) -> tuple[float, float]:
    result = bootstrap(
        data,
        statistic,
        paired=False,
        vectorized=False,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def estimate(probes: Probes, seed: int = 1) -> Estimate:
    """The fitted crossing with its bootstrap interval; ``n`` is the number of probes (NOTHING without any)."""
    value = fitted(probes)
    if not math.isfinite(value):
        return NOTHING
    if probes.n < 2:
        return Estimate(value, value, value, probes.n, math.nan)
    low, high = _interval((np.arange(probes.n),), _resampled(probes), seed)
    return Estimate(value, low, high, probes.n, CONFIDENCE)


def ratio(mine: Probes, baseline: Probes, seed: int = 1) -> Estimate:
    """The ratio of two fitted crossings (``mine`` over ``baseline``) with a bootstrap interval that resamples each
    topology's probes on its own; ``n`` is the smaller number of probes (NOTHING when either has none)."""
    top, bottom = fitted(mine), fitted(baseline)
    if not (math.isfinite(top) and math.isfinite(bottom) and bottom > 0):
        return NOTHING
    value = top / bottom
    n = min(mine.n, baseline.n)
    if n < 2:
        return Estimate(value, value, value, n, math.nan)
    over = _resampled(mine)
    under = _resampled(baseline)
    low, high = _interval((np.arange(mine.n), np.arange(baseline.n)), lambda a, b: over(a) / under(b), seed)
    return Estimate(value, low, high, n, CONFIDENCE)

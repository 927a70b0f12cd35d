"""Whether a load run's figures can be trusted, judged by the effect of the generator's own lag on each figure.

A latency is measured from the request's intended send time, so any delay of the generator is charged to the system
under test. How much that matters depends on the figure: 1 ms of generator lag is noise beside a 40 ms p99 and
doubles a 1 ms p50. So each latency percentile the report shows (those the sample resolves, and the maximum) is
compared with the generator's own lag at the same percentile (``dispatched - intended``: when the scheduler got to
the request, not when a connection was free): when the lag is more than :data:`MATERIAL_SHARE` of the latency, that
figure is voided, with its reason.

Waiting for a free connection is not the generator's lag: the pool is sized by Little's law for latencies up to the
SLO, so when every connection is busy the system is slower than the SLO, and the run is a measured **overload** (past
the knee, over the SLO), not an invalid run. A run is invalid only when the generator itself could not keep its
schedule: it dispatched fewer than :data:`MIN_DISPATCHED_SHARE` of the offered requests on time. A voided figure is
left out where it would be shown (``voided_percentiles``), without voiding the run's other figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bench.common import stats
from bench.common.intervals import resolves
from bench.common.names import PERCENTILES
from bench.common.stats import MATERIAL_SHARE

#: A run is invalid when the generator dispatched fewer than this share of the offered requests on time.
MIN_DISPATCHED_SHARE: Final = 0.99
#: How late a dispatch may be and still count as on time for the schedule check (seconds). The check is about the
#: load offered (a generator that falls behind offers less than it says); how much its lag distorts a latency is
#: judged figure by figure (``MATERIAL_SHARE``), so this bound is loose: near the knee on 2 cores, 1-2% of the
#: requests are dispatched 1-5 ms late while the p99 shown is tens of milliseconds.
ON_TIME: Final = 0.010
#: A request "waited for a connection" when it was sent this long after it was dispatched (seconds).
WAITED: Final = 0.001
#: The share of requests that waited for a connection above which a run is called an overload.
OVERLOAD_SHARE: Final = 0.01


@dataclass(frozen=True)
class Judgement:
    """What a run's figures are worth: the percentiles its own lag voids (each figure is judged on its own: a
    voided p50 says nothing of the p99), why the run is invalid as a whole (the generator did not keep its
    schedule), whether it was an overload, and why."""

    voided: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    overloaded: bool = False
    overload_reason: str = ""

    @property
    def valid(self) -> bool:
        return not self.reasons

    def columns(self) -> dict[str, Any]:
        return {
            "voided_percentiles": ",".join(self.voided),
            "voided_reasons": "; ".join(f"{name}: {why}" for name, why in self.voided.items()),
            "overloaded": self.overloaded,
            "overload_reason": self.overload_reason,
        }


def shown_percentiles(count: int) -> list[tuple[str, float]]:
    """The percentiles a sample of ``count`` latencies resolves, then the maximum (always shown)."""
    return [(name, q) for name, q in PERCENTILES if resolves(count, q)] + [("max", 100.0)]


def judge(
    intended: npt.NDArray[np.float64],
    dispatched: npt.NDArray[np.float64],
    sent: npt.NDArray[np.float64],
    done: npt.NDArray[np.float64],
) -> Judgement:
    """Judge the measured requests of one run (arrays in schedule order, seconds; ``sent`` NaN if never sent)."""
    if len(intended) == 0:
        return Judgement(reasons=["no request was scheduled in the measured window"])
    lag = dispatched - intended
    latency = done - intended
    voided = _voided(lag, latency)
    reasons = []
    on_time = np.count_nonzero(lag <= ON_TIME)
    if on_time < MIN_DISPATCHED_SHARE * len(intended):
        reasons.append(
            f"the generator dispatched {on_time / len(intended):.1%} of the requests within {ON_TIME * 1e3:g} ms of "
            f"their schedule (under {MIN_DISPATCHED_SHARE:.0%}): its scheduler lag p99 was "
            f"{stats.percentile(lag, 99.0) * 1e3:.2f} ms"
        )
    waited = np.isnan(sent) | (sent - dispatched > WAITED)
    share = float(waited.mean())
    overload = ""
    if share > OVERLOAD_SHARE:
        overload = (
            f"{share:.1%} of the requests waited for a free connection (the system answered slower than the pool "
            f"is sized for: past the knee)"
        )
    return Judgement(voided=voided, reasons=reasons, overloaded=bool(overload), overload_reason=overload)


def _voided(lag: npt.NDArray[np.float64], latency: npt.NDArray[np.float64]) -> dict[str, str]:
    answered = ~np.isnan(latency)
    voided: dict[str, str] = {}
    for name, q in shown_percentiles(int(answered.sum())):
        own = stats.percentile(lag[answered], q)
        figure = stats.percentile(latency[answered], q)
        if math.isnan(figure) or own > MATERIAL_SHARE * figure:
            voided[name] = (
                f"the generator's own lag {own * 1e3:.2f} ms is over {MATERIAL_SHARE:.0%} of the latency "
                f"{figure * 1e3:.2f} ms"
            )
    return voided

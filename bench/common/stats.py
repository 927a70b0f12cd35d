"""Small pure functions over load-generator records: percentiles, per-op summaries, error counts, sustainable rate.

The frames are those of ``LoadResult.to_frame()``: one row per request with columns op, intended, sent, done,
status, error and warmup. Latency is ``done - intended`` (from the INTENDED send time) for every request, failed
ones included: a timeout counts with the time it was given up, a refusal with how fast it came back. Errors are
reported beside the percentiles, never dropped from them.

Percentiles use the nearest-rank definition: p99 is a latency that some request actually had, and at least 99% of
requests had at most that latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from bench.common.names import ERRORS, PERCENTILES

#: The generator's own lag voids a latency figure when it is more than this share of it (``bench.load.validity``).
MATERIAL_SHARE: Final = 0.10


def _clean_sorted(values: Iterable[float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    return np.sort(array[~np.isnan(array)])


def _nearest_rank(ordered: npt.NDArray[np.float64], q: float) -> float:
    # rank = ceil(q% of n), computed on a rounded product so that 99.9% of 1000 is rank 999, not 1000 (floating point)
    rank = max(1, math.ceil(round(q / 100.0 * ordered.size, 6)))
    return float(ordered[rank - 1])


def percentile(values: Iterable[float] | npt.ArrayLike, q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values`` (NaN values ignored); NaN when there are none."""
    ordered = _clean_sorted(values)
    return _nearest_rank(ordered, q) if ordered.size else math.nan


def latency_percentiles(latencies: Iterable[float] | npt.ArrayLike) -> dict[str, float]:
    """p50, p90, p99, p99.9, p99.99 and max of ``latencies`` (seconds); all NaN when there are none."""
    ordered = _clean_sorted(latencies)
    if ordered.size == 0:
        return {name: math.nan for name, _ in PERCENTILES} | {"max": math.nan}
    return {name: _nearest_rank(ordered, q) for name, q in PERCENTILES} | {"max": float(ordered[-1])}


def lag_voids(lag: pd.Series, latency: pd.Series) -> pd.Series:
    """Per row, whether the generator's own ``lag`` is over :data:`MATERIAL_SHARE` of ``latency`` (the same unit),
    which voids that latency figure. NaN on either side voids nothing."""
    return (lag > MATERIAL_SHARE * latency).astype(bool)


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows outside the warm-up (all rows when there is no ``warmup`` column)."""
    if "warmup" not in frame.columns:
        return frame
    return frame.loc[~frame["warmup"].astype(bool)]


def latencies(frame: pd.DataFrame) -> pd.Series:
    """Per-request latency from the intended send time, ``done - intended`` (seconds)."""
    return frame["done"] - frame["intended"]


def successes(frame: pd.DataFrame) -> int:
    """How many rows got a response below 400 (warm-up included: CPU is metered over the whole run)."""
    return int((frame["error"].astype(str) == "").sum())


def error_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many rows failed, by error class; every class is present, with 0 when it did not occur."""
    counts = frame["error"].astype(str).value_counts()
    return {name: int(counts.get(name, 0)) for name in ERRORS}


def per_op_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per op over the measured (non-warm-up) rows: count, errors, error_rate, latency percentiles, and the
    generator's own lag (``dispatched - intended``) at p50 and p99 (``lag_p50``, ``lag_p99``; NaN without a
    ``dispatched`` column), so that a figure of one operation can be judged by the lag of its own requests."""
    rows = {}
    for op, group in measured(frame).groupby("op", observed=True, sort=True):
        errors = int((group["error"].astype(str) != "").sum())
        lag = group["dispatched"] - group["intended"] if "dispatched" in group else pd.Series([math.nan])
        rows[str(op)] = {
            "count": len(group),
            "errors": errors,
            "error_rate": errors / len(group),
            **latency_percentiles(latencies(group)),
            "lag_p50": percentile(lag, 50.0),
            "lag_p99": percentile(lag, 99.0),
        }
    columns = ["count", "errors", "error_rate", *(name for name, _ in PERCENTILES), "max", "lag_p50", "lag_p99"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("op")


def sustainable_throughput(sweep: pd.DataFrame, slo_p99: float, error_budget: float) -> float | None:
    """The highest target rate of a sweep that was valid, met the p99 SLO and stayed under the error budget.

    ``sweep`` has one row per run with columns ``target_rate``, ``p99`` (seconds), ``error_rate`` (a fraction)
    and ``valid``, e.g. ``pd.DataFrame([result.summary() for result in results])``. ``error_budget`` is a
    fraction: a run passes when its error rate is strictly below it. None when no run passes.
    """
    passing = sweep.loc[sweep["valid"].astype(bool) & (sweep["p99"] <= slo_p99) & (sweep["error_rate"] < error_budget)]
    if passing.empty:
        return None
    return float(passing["target_rate"].max())


def per_interval(frame: pd.DataFrame, width: float, failed: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """Per ``width`` seconds of intended send time: ``t`` (bin start), requests, errors (rows where ``failed``), and
    the p50, p90 and p99 latency of the bin's requests. Bins without a request are absent."""
    bins = np.floor(frame["intended"].to_numpy() / width).astype(int)
    latency = latencies(frame).to_numpy()
    rows = []
    for index in np.unique(bins):
        mask = bins == index
        rows.append(
            {
                "t": float(index * width),
                "requests": int(mask.sum()),
                "errors": int(failed[mask].sum()),
                "p50": percentile(latency[mask], 50.0),
                "p90": percentile(latency[mask], 90.0),
                "p99": percentile(latency[mask], 99.0),
            }
        )
    return pd.DataFrame(rows, columns=["t", "requests", "errors", "p50", "p90", "p99"])


def disturbed_above(p99_before: float) -> float:
    """The latency above which a bin of a restart's timeline counts as disturbed (its p90 is compared), from the p99
    before the restart: twice that p99, or 5 ms more if that is higher (bench.experiments.deployment)."""
    return max(2.0 * p99_before, p99_before + 0.005)

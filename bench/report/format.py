"""Figures as the report shows them: rounded for display only, never flattering (a share is rounded down)."""

from __future__ import annotations

import math
from typing import Final

import pandas as pd

from bench.common.stats import percentile
from bench.report.charts import availability_text, num, signed

__all__ = [
    "MIB",
    "availability_text",
    "coefficient",
    "detect_text",
    "duration_text",
    "median",
    "ms",
    "num",
    "plural",
    "ratio_text",
    "recover_text",
    "rounded",
    "short",
    "signed",
]

MIB: Final = 2**20


def ms(seconds: float | None) -> str:
    """Seconds shown in milliseconds, as :func:`num` rounds them."""
    return num(None if seconds is None else seconds * 1e3)


def ratio_text(ratio: float) -> str:
    return f"×{ratio:.2f}" if ratio < 10 else f"×{ratio:.0f}"


def duration_text(seconds: float) -> str:
    """A duration in ms under a second, else in s."""
    if not math.isfinite(seconds):
        return "—"
    return f"{ms(seconds)} ms" if abs(seconds) < 1.0 else f"{num(seconds)} s"


def detect_text(seconds: float) -> str:
    """The time to detect as the experiment records it (the start of the first unhealthy whole second of the load,
    from the fault's start: negative when the fault began within that second), shown as the span it bounds."""
    if not math.isfinite(seconds):
        return "no unhealthy second"
    low, high = max(0.0, seconds), seconds + 1.0
    return f"≤ {short(high)} s" if low == 0 else f"{short(low)} – {short(high)} s"


def recover_text(seconds: float) -> str:
    """The time to recover as recorded: the end of the last unhealthy whole second after the fault ended, so an
    upper bound."""
    if not math.isfinite(seconds):
        return "—"
    return "0 s" if seconds <= 0 else f"≤ {short(seconds)} s"


def short(seconds: float) -> str:
    """Seconds with at most two decimals and no trailing zeros (the fault windows are set in tenths of a second)."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def median(values: pd.Series) -> float:
    """Nearest-rank median: a value that some traced request actually had."""
    return percentile(values.to_numpy(dtype=float), 50.0)


def coefficient(value: float) -> str:
    """A model coefficient: three significant digits, however small (κ is often under 0.001)."""
    if not math.isfinite(value):
        return "—"
    return "0" if value == 0 else f"{value:.3g}"


def rounded(value: float) -> str:
    """A figure in whole units (an RMSE of 2e-12 req/s is 0 req/s)."""
    return f"{value:,.0f}" if math.isfinite(value) else "—"

"""Figures as the report shows them never flatter."""

from __future__ import annotations

import math

from bench.report.format import availability_text, detect_text, recover_text


def test_displayed_figures_never_flatter() -> None:
    assert [availability_text(v) for v in (1.0, 0.99961, 0.99, 0.98999, 0.456, 0.0, math.nan)] == [
        "100%",
        "99.9%",
        "99.0%",
        "98%",
        "45%",
        "0%",
        "—",
    ]
    # The experiment's time to detect is the start of the first unhealthy whole second: shown as the span it bounds.
    assert [detect_text(v) for v in (-0.5, 0.0, 2.0, math.nan)] == [
        "≤ 0.5 s",
        "≤ 1 s",
        "2 – 3 s",
        "no unhealthy second",
    ]
    assert [recover_text(v) for v in (0.0, 1.0, 2.5)] == ["0 s", "≤ 1 s", "≤ 2.5 s"]

"""The failure timeline judges each second by what its sample can carry: one slow request detects nothing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.experiments.failure import FailureParams, healthy_seconds, impact

RATE = 200.0
SECONDS = 10
OPS = ("browse", "product", "user", "checkout")


def requests(latency: float = 0.002) -> pd.DataFrame:
    """``SECONDS`` s of requests at ``RATE`` req/s, every one answered in ``latency`` seconds, ops in turn."""
    intended = np.arange(int(RATE * SECONDS)) / RATE
    return pd.DataFrame(
        {
            "op": [OPS[i % len(OPS)] for i in range(len(intended))],
            "intended": intended,
            "sent": intended,
            "done": intended + latency,
            "error": pd.Categorical([""] * len(intended)),
        }
    )


PARAMS = FailureParams()


def test_one_slow_request_in_a_clean_run_detects_nothing() -> None:
    frame = requests()
    frame.loc[1000, "done"] = frame.loc[1000, "intended"] + 0.060  # one request of 2,000 over the 50 ms SLO
    healthy = healthy_seconds(frame, 0.050)
    assert all(healthy.values())
    result = impact(frame, 3.0, 6.0, PARAMS, 0.050)
    assert math.isnan(result["time_to_detect"])
    assert result["time_to_recover"] == 0.0


def test_one_failed_request_in_a_second_is_not_an_outage() -> None:
    frame = requests()
    frame["error"] = frame["error"].cat.add_categories(["5xx"])
    frame.loc[1000, "error"] = "5xx"  # 1 of the 200 requests of second 5
    assert all(healthy_seconds(frame, 0.050).values())


def test_a_real_outage_is_detected_and_its_recovery_timed() -> None:
    frame = requests()
    frame["error"] = frame["error"].cat.add_categories(["refused"])
    down = (frame["intended"] >= 3.0) & (frame["intended"] < 5.0)
    frame.loc[down & (frame.index % 2 == 0), "error"] = "refused"  # half of everything fails for 2 s
    healthy = healthy_seconds(frame, 0.050)
    assert [s for s, ok in sorted(healthy.items()) if not ok] == [3, 4]
    result = impact(frame, 3.0, 4.0, PARAMS, 0.050)
    assert result["time_to_detect"] == pytest.approx(0.0)
    assert result["time_to_recover"] == pytest.approx(1.0)


def test_a_second_that_is_slow_throughout_is_unhealthy() -> None:
    frame = requests()
    slow = (frame["intended"] >= 6.0) & (frame["intended"] < 7.0)
    frame.loc[slow, "done"] = frame.loc[slow, "intended"] + 0.200
    healthy = healthy_seconds(frame, 0.050)
    assert [s for s, ok in sorted(healthy.items()) if not ok] == [6]

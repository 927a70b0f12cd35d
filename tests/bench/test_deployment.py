"""The independent-deployment experiment: restarts under load on real processes, and the figures derived from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.experiments import deployment
from bench.experiments.deployment import DeploymentParams, disruption, scenarios, timeline
from tests.bench.contexts import silent, small_context

SHORT = DeploymentParams(rate=100.0, duration=4.0, warmup=0.3, restart_at=1.2, readmit=0.5)


def requests(
    intended: list[float], latency: float = 0.001, failed_at: tuple[float, float] | None = None
) -> pd.DataFrame:
    frame = pd.DataFrame({"intended": intended})
    frame["done"] = frame["intended"] + latency
    failing = (frame["intended"] >= failed_at[0]) & (frame["intended"] < failed_at[1]) if failed_at else False
    frame["error"] = np.where(failing, "refused", "")
    return frame


def test_time_to_steady_state_ends_with_the_last_disturbed_bin() -> None:
    frame = requests([i / 100 for i in range(1000)], failed_at=(5.1, 5.7))
    bins = timeline(frame, 0.5)
    assert bins["requests"].sum() == 1000
    assert bins.loc[bins["t"] == 5.0, "errors"].item() == 40
    assert bins.loc[bins["t"] == 5.5, "errors"].item() == 20
    figures = disruption(frame, bins, [(5.05, "stop x"), (5.6, "x ready")], warmup=0.5)
    assert figures["errors_during"] == 60
    assert figures["time_to_steady_s"] == pytest.approx(6.0 - 5.05)
    assert figures["restart_seconds"] == pytest.approx(0.55)
    assert figures["p99_before"] == pytest.approx(0.001)


def test_failures_a_retrying_client_would_absorb_are_counted_apart() -> None:
    frame = requests([i / 100 for i in range(1000)], failed_at=(5.1, 5.2))  # 10 refused
    frame["op"] = "browse"
    frame["unanswered"] = False
    reset = frame.index[(frame["intended"] >= 5.3) & (frame["intended"] < 5.34)]  # 4 lost on reused connections
    frame.loc[reset, "error"] = "reset"
    frame.loc[reset, "unanswered"] = True
    figures = disruption(frame, timeline(frame, 0.5), [(5.05, "stop x"), (5.6, "x ready")], warmup=0.5)
    assert figures["errors_during"] == 14
    assert figures["errors_absorbable_by_retry"] == 4  # nothing came back on a reused connection: safe to resend


def test_a_slow_bin_after_the_restart_counts_as_disturbed_and_a_4xx_is_not_a_failure() -> None:
    frame = requests([i / 100 for i in range(1000)])
    slow = (frame["intended"] >= 7.0) & (frame["intended"] < 7.5)
    frame.loc[slow, "done"] = frame.loc[slow, "intended"] + 0.2  # 200x the p99 before
    frame.loc[frame.index[::7], "error"] = "4xx"  # the shop saying no (out of stock): not a failure
    figures = disruption(frame, timeline(frame, 0.5), [(5.0, "stop x"), (5.3, "x ready")], warmup=0.5)
    assert figures["errors_during"] == 0
    assert figures["time_to_steady_s"] == pytest.approx(2.5)
    assert figures["max_during"] == pytest.approx(0.2)


def test_one_slow_request_in_a_bin_does_not_make_it_disturbed() -> None:
    frame = requests([i / 100 for i in range(1000)])
    frame.loc[800, "done"] = frame.loc[800, "intended"] + 0.2  # a lone GC pause, as happens without any restart
    figures = disruption(frame, timeline(frame, 0.5), [(5.0, "stop x"), (5.3, "x ready")], warmup=0.5)
    assert figures["time_to_steady_s"] == pytest.approx(0.3)  # steady as soon as x is back
    assert figures["max_during"] == pytest.approx(0.001)


def test_an_undisturbed_restart_is_steady_when_the_last_replica_is_ready() -> None:
    frame = requests([i / 100 for i in range(1000)])
    figures = disruption(frame, timeline(frame, 0.5), [(5.0, "stop a"), (5.2, "a ready"), (6.4, "b ready")], 0.5)
    assert figures["time_to_steady_s"] == pytest.approx(1.4)
    assert figures["error_rate_during"] == 0.0
    assert not math.isnan(figures["p99_during"])


def test_scenarios_follow_the_topologies_asked_for() -> None:
    assert [s.name for s in scenarios(SHORT, ["monolith"])] == ["monolith-1", "monolith-n"]
    rolling = scenarios(SHORT, ["microservices"])[0]
    assert rolling.restarted() == ["inventory-1", "inventory-2"]
    assert scenarios(SHORT, ["monolith"])[1].restarted() == ["monolith-1", "monolith-2"]
    assert scenarios(SHORT, ["colocated"]) == []


@pytest.mark.sockets
def test_restarts_under_load_on_real_processes(tmp_path: Path) -> None:
    """A lone worker or service restarted drops requests; with a second one taking over, users see none."""
    tables = deployment.EXPERIMENT.run(small_context(tmp_path, ["monolith", "microservices"]), SHORT, silent)
    summary = tables["deployment"].set_index("scenario")
    assert set(summary.index) == {"rolling", "single", "monolith-1", "monolith-n"}
    assert summary.loc["monolith-1", "errors_during"] > 0  # nothing listens while the only worker restarts
    assert summary.loc["single", "errors_during"] > 0  # the catalog is down while inventory restarts
    # Graceful stops with a second replica: the balancer (services) and the kernel (workers) route around it.
    assert summary.loc["rolling", "errors_during"] <= summary.loc["single", "errors_during"] // 4
    assert summary.loc["monolith-n", "errors_during"] <= summary.loc["monolith-1", "errors_during"] // 4
    # A graceful stop loses no request it accepted: what fails with a second replica is only what was written on a
    # kept-alive connection as the stopping one closed it, which a retrying client would have absorbed.
    for scenario in ("rolling", "monolith-n"):
        lost = summary.loc[scenario, "errors_during"] - summary.loc[scenario, "errors_absorbable_by_retry"]
        assert lost == 0, scenario
    assert (summary["restart_seconds"] > 0).all()
    assert (summary["time_to_steady_s"] >= summary["restart_seconds"]).all()
    events = tables["deployment_events"]
    rolling = events[events["scenario"] == "rolling"]["event"].tolist()
    assert rolling == [
        "stop inventory-1",
        "inventory-1 stopped",
        "inventory-1 ready",
        "stop inventory-2",
        "inventory-2 stopped",
        "inventory-2 ready",
    ]
    bins = tables["deployment_timeline"]
    assert bins.groupby("scenario")["requests"].sum().min() >= 0.9 * SHORT.rate * (SHORT.duration + SHORT.warmup)

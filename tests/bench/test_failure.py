"""The failure experiment on real processes: each fault's impact, and a consistent shop after every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common.names import (
    FAILURE_IMPACT,
    FAILURE_TIMELINE,
    FAULT_KIND,
    FAULT_TARGET,
    PLACEMENT,
    WINDOW_END,
    WINDOW_START,
)
from bench.experiments import failure
from bench.experiments.failure import FailureParams
from bench.system.faults import FaultPlan
from tests.bench.contexts import silent, small_context

pytestmark = pytest.mark.sockets

SHORT = dict(rate=60.0, before=0.8, window=1.2, after=1.5, warmup=0.3, call_timeout=0.5)


def run(
    topology: str, faults: tuple[FaultPlan, ...], tmp_path: Path, profiles: tuple[str, ...] = ("naive",), **changes
) -> dict:
    params = FailureParams(faults=faults, profiles=profiles, **{**SHORT, **changes})  # type: ignore[arg-type]
    return failure.EXPERIMENT.run(small_context(tmp_path / topology, [topology]), params, silent)


def test_killing_each_microservice_during_checkouts_leaves_no_anomaly(tmp_path: Path) -> None:
    targets = ("gateway", "users", "inventory", "payments", "notifications", "orders")
    tables = run("microservices", tuple(FaultPlan("kill", t) for t in targets), tmp_path)
    consistency = tables["consistency"].set_index("fault")
    assert consistency["consistent"].all(), consistency.T
    impact = tables["failure_impact"].set_index("fault")
    assert impact.loc["kill:gateway", "blast_radius"] == 1.0  # nothing gets past a dead gateway
    assert impact.loc["kill:notifications", "availability_checkout"] == 1.0  # notifications are asynchronous
    assert impact.loc["kill:payments", "availability_checkout"] < 0.5
    assert impact.loc["kill:payments", "availability_browse"] == 1.0  # the catalog does not need payments
    assert (impact["restart_seconds"] > 0).all()
    timeline = tables["failure_timeline"]
    assert timeline["in_fault"].any()
    assert not timeline["in_fault"].all()


def test_each_fault_run_says_what_was_hit_and_when(tmp_path: Path) -> None:
    faults = (FaultPlan("kill", "payments"), FaultPlan("latency", "inventory", 0.2))
    tables = run("microservices", faults, tmp_path)
    impact = tables[FAILURE_IMPACT].set_index("fault")
    assert impact.loc["kill:payments", FAULT_KIND] == "kill"
    assert impact.loc["kill:payments", FAULT_TARGET] == "payments"
    assert impact.loc["latency:inventory", FAULT_KIND] == "latency"
    assert impact.loc["latency:inventory", FAULT_TARGET] == "inventory"
    planned_start = SHORT["warmup"] + SHORT["before"]
    for fault in impact.index:
        start, end = impact.loc[fault, WINDOW_START], impact.loc[fault, WINDOW_END]
        assert planned_start <= start < planned_start + 0.5, fault  # applied when planned, give or take a call
        assert end > start, fault
    # A kill lasts until the process is back: longer than the window when the restart takes time.
    assert impact.loc["kill:payments", WINDOW_END] - impact.loc["kill:payments", WINDOW_START] >= SHORT["window"]
    timeline = tables[FAILURE_TIMELINE]
    assert {"profile", "fault", FAULT_KIND, FAULT_TARGET, WINDOW_START, WINDOW_END} <= set(timeline.columns)
    for fault, rows in timeline.groupby("fault"):
        assert (rows[WINDOW_START] == impact.loc[fault, WINDOW_START]).all()
        in_fault = rows[rows["in_fault"]]["second"]
        assert in_fault.min() >= rows[WINDOW_START].iloc[0]
        assert in_fault.max() < rows[WINDOW_END].iloc[0]
    placement = tables[PLACEMENT].set_index("component")
    assert placement.loc["payments", "process"] == "payments"
    assert placement.loc["payments", "database"] == "payments.db"
    assert placement.loc["gateway", "database"] == ""


def test_a_payments_fault_takes_down_the_whole_monolith_only_when_it_is_a_process_fault(tmp_path: Path) -> None:
    faults = (FaultPlan("kill", "payments"), FaultPlan("error", "payments", 1.0))
    tables = run("monolith", faults, tmp_path)
    assert tables["consistency"]["consistent"].all()
    impact = tables["failure_impact"].set_index("fault")
    assert impact.loc["kill:payments", "availability_browse"] < 0.5  # one process: everything goes down
    assert impact.loc["error:payments", "availability_browse"] == 1.0  # a module fault stays in the module
    assert impact.loc["error:payments", "availability_checkout"] == 0.0


def test_the_resilient_profile_fails_fast_where_the_naive_one_waits(tmp_path: Path) -> None:
    window = 3.0  # longer than the resilient profile's worst case (3 attempts of 0.5 s), so the two can differ
    hang = (FaultPlan("hang", "payments"),)
    tables = run("monolith", hang, tmp_path, profiles=("naive", "resilient"), window=window)
    assert tables["consistency"]["consistent"].all()
    impact = tables["failure_impact"].set_index("profile")
    # Naive: in-process calls have no timeout, checkouts wait for the whole hang. Resilient: a timeout per module.
    assert impact.loc["resilient", "p99_checkout"] < impact.loc["naive", "p99_checkout"]
    assert impact.loc["naive", "p99_checkout"] >= 0.6 * window


def test_on_a_target_the_quick_run_adds_a_fault_it_can_apply_there() -> None:
    from types import SimpleNamespace

    quick = failure.QUICK_FAILURE
    assert [plan.kind for plan in quick.faults] == ["kill"]  # here: the kill, the fault that tells topologies apart
    target = SimpleNamespace(target=SimpleNamespace(spec=SimpleNamespace(profile="naive")))
    there = failure.configure(target, quick)  # type: ignore[arg-type]
    assert [plan.name for plan in there.faults] == ["kill:payments", "error:payments"]  # the kill is skipped there
    assert there.profiles == ("naive",)
    full = failure.configure(target, failure.FailureParams())  # type: ignore[arg-type]
    assert full.faults == failure.FailureParams().faults  # dependency faults among them already
    assert failure.configure(SimpleNamespace(target=None), quick) is quick  # type: ignore[arg-type]

"""Loading a results directory: meta.json decoded once into typed structs, and a directory written before the
experiments recorded placement and the fault columns upgraded at load time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from bench.common import meta
from bench.common.names import FAULT_KIND, FAULT_TARGET, PLACEMENT, WINDOW_END, WINDOW_START
from bench.report.results import load_results
from tests.report.conftest import copy_golden
from tests.report.views import context

MICROSERVICES = ("gateway", "users", "inventory", "payments", "notifications", "orders")


def test_meta_is_decoded_into_typed_structs(golden: Path) -> None:
    loaded = load_results(golden)
    typed = loaded.metadata
    assert typed.parameters.topologies == ["monolith", "colocated", "microservices"]
    assert typed.environment.cpu_count == 2
    assert typed.parameters.failure is not None
    assert [(f.kind, f.target, f.value) for f in typed.parameters.failure.faults or []] == [
        ("kill", "payments", 0.0),
        ("error", "payments", 0.5),
    ]
    assert typed.sustainable_throughput["monolith"] == loaded.meta["sustainable_throughput"]["monolith"]
    # A parameter the run did not record is left out of the listing, not shown empty.
    assert ("slo_p99", 0.05) in meta.recorded(typed.parameters.network)
    assert meta.recorded(meta.NetworkParams(low_rate=5.0)) == [("low_rate", 5.0)]


def test_an_empty_meta_decodes_to_defaults() -> None:
    empty = meta.decode(b"{}")
    assert empty.parameters.topologies == []
    assert empty.parameters.ran("failure")  # an older run that did not list its experiments
    assert empty.parameters.failure is None
    with pytest.raises(meta.msgspec.ValidationError):
        meta.decode(json.dumps({"parameters": {"topologies": "monolith"}}))


def test_placement_is_derived_from_an_older_run(golden: Path) -> None:
    placement = load_results(golden).table(PLACEMENT)
    assert set(placement.columns) == {"topology", "component", "process", "database"}
    mono = placement[placement["topology"] == "monolith"]
    assert mono[["component", "process", "database"]].values.tolist() == [["monolith", "monolith", "monolith.db"]]
    for topology in ("colocated", "microservices"):
        rows = placement[placement["topology"] == topology].set_index("component")
        assert list(rows.index) == list(MICROSERVICES)
        assert rows.loc["gateway", "database"] == ""
        assert rows.loc["orders", "database"] == "orders.db"
        expected = topology if topology == "colocated" else "orders"
        assert rows.loc["orders", "process"] == expected
    ctx = context(golden)
    assert [ctx.databases(t) for t in ctx.topologies] == [1, 5, 5]
    assert ctx.process_of("microservices")["payments"] == "payments"


def test_a_database_no_component_claims_keeps_a_row(tmp_path: Path) -> None:
    copy = copy_golden(tmp_path / "results")
    (copy / "runs" / "monolith" / "audit.db").touch()
    placement = load_results(copy).table(PLACEMENT)
    row = placement[(placement["topology"] == "monolith") & (placement["database"] == "audit.db")]
    assert row[["component", "process"]].values.tolist() == [["audit", ""]]
    assert context(copy).databases("monolith") == 2


def test_fault_columns_are_derived_from_an_older_run(golden: Path) -> None:
    impact = load_results(golden).table("failure_impact")
    assert set(zip(impact["fault"], impact[FAULT_KIND], impact[FAULT_TARGET], strict=True)) == {
        ("kill:payments", "kill", "payments"),
        ("error:payments", "error", "payments"),
    }
    # warm-up 0.3 s + 0.6 s before the fault, for 1.2 s
    assert impact[WINDOW_START].tolist() == pytest.approx([0.9] * len(impact))
    assert impact[WINDOW_END].tolist() == pytest.approx([2.1] * len(impact))


def test_a_current_run_is_read_as_written(tmp_path: Path) -> None:
    copy = copy_golden(tmp_path / "results")
    impact = pd.read_parquet(copy / "failure_impact.parquet")
    impact = impact.drop(columns=["kind", "target"]).assign(
        fault_kind="pause", fault_target="payments", window_start=5.0, window_end=6.5
    )
    impact.to_parquet(copy / "failure_impact.parquet", index=False)
    placement = pd.DataFrame(
        [{"topology": "monolith", "component": "monolith", "process": "monolith-1", "database": "shop.db"}]
    )
    placement.to_parquet(copy / "placement.parquet", index=False)
    loaded = load_results(copy)
    assert loaded.table(PLACEMENT).values.tolist() == placement.values.tolist()  # runs/ is not read
    assert set(loaded.table("failure_impact")[FAULT_KIND]) == {"pause"}
    ctx = context(copy)
    fault = ctx.faults()[0]
    assert ctx.fault_window(fault) == (5.0, 6.5)
    assert ctx.databases("colocated") is None


def test_without_failure_parameters_the_window_comes_from_the_timeline(tmp_path: Path) -> None:
    copy = copy_golden(tmp_path / "results")
    raw = json.loads((copy / "meta.json").read_text())
    del raw["parameters"]["failure"]
    (copy / "meta.json").write_text(json.dumps(raw))
    impact = load_results(copy).table("failure_impact")
    timeline = pd.read_parquet(copy / "failure_timeline.parquet")
    seconds = timeline.loc[timeline["in_fault"], "second"]
    assert impact[WINDOW_START].iloc[0] == seconds.min()
    assert impact[WINDOW_END].iloc[0] == seconds.max() + 1.0
    (copy / "failure_timeline.parquet").unlink()
    assert math.isnan(load_results(copy).table("failure_impact")[WINDOW_START].iloc[0])

"""A real run writes a results directory that pandas loads, with every topology, validity flags and per-hop data."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from bench.common.meta import read as read_meta
from bench.common.names import PLACEMENT, PLACEMENT_COLUMNS
from bench.experiments import network
from bench.report.results import load_results
from bench.run import summary_tables
from plumbing.topology import SERVICES, TOPOLOGIES

pytestmark = pytest.mark.sockets


def test_results_directory_has_every_table_and_topology(tiny_results: Path) -> None:
    results = load_results(tiny_results)
    for name in ("requests", "steps", "resources", "ops", "traces", "spans"):
        assert not results.table(name).empty, name
        assert set(results.table(name)["topology"]) == set(TOPOLOGIES), name
    # The monolith makes no internal call: it has no hop.
    assert set(results.table("hops")["topology"]) == {"colocated", "microservices"}
    steps = results.table("steps")
    assert {"low", "traced", "sweep"} <= set(steps["phase"])
    assert steps["valid"].dtype == bool
    assert (steps["invalid_reasons"] == "").eq(steps["valid"]).all()
    requests = results.table("requests")
    assert {"op", "intended", "sent", "done", "status", "error", "warmup"} <= set(requests.columns)
    assert ((requests["done"] >= requests["intended"]) | requests["done"].isna()).all()


def test_placement_says_which_process_and_database_hold_each_component(tiny_results: Path) -> None:
    placement = load_results(tiny_results).table(PLACEMENT)
    assert list(placement.columns) == list(PLACEMENT_COLUMNS)
    assert set(placement["topology"]) == set(TOPOLOGIES)
    by = placement.set_index(["topology", "component"])
    assert by.loc[("monolith", "monolith"), "process"] == "monolith"
    assert by.loc[("monolith", "monolith"), "database"] == "monolith.db"
    colocated = placement[placement["topology"] == "colocated"]
    assert set(colocated["process"]) == {"colocated"}
    assert set(colocated["component"]) == {"gateway", *SERVICES}
    for service in SERVICES:
        assert by.loc[("microservices", service), "process"] == service
        assert by.loc[("microservices", service), "database"] == f"{service}.db"
        assert by.loc[("colocated", service), "database"] == f"{service}.db"
    assert by.loc[("microservices", "gateway"), "database"] == ""  # the gateway keeps no data
    assert len(placement) == 1 + 6 + 6  # one row per component of each topology


def test_meta_records_environment_parameters_and_validity(tiny_results: Path) -> None:
    meta = load_results(tiny_results).meta
    assert meta["environment"]["python"]
    assert meta["environment"]["cpu_count"] >= 1
    assert meta["parameters"]["topologies"] == list(TOPOLOGIES)
    assert set(meta["sustainable_throughput"]) == set(TOPOLOGIES)
    assert isinstance(meta["invalid_runs"], list)


def test_per_hop_breakdown_counts_internal_calls(tiny_results: Path) -> None:
    traces = load_results(tiny_results).table("traces")
    checkout = traces[traces["op"] == "checkout"].groupby("topology")["internal_calls"].median()
    assert checkout["monolith"] == 0
    # gateway -> orders, orders -> users, inventory (reserve, commit), payments
    assert checkout["microservices"] == 5
    assert checkout["colocated"] == 5
    ms = traces[traces["topology"] == "microservices"]
    assert (ms["between_us"] > 0).all()
    assert (ms["in_gateway_us"] > 0).all()


def test_rounds_take_the_deployments_of_each_topology_in_turn(tiny_results: Path) -> None:
    steps = load_results(tiny_results).table("steps")
    for topology in TOPOLOGIES:
        assert (tiny_results / "runs" / f"{topology}-2" / "topology.json").is_file()  # a second deployment ran
        mine = steps[steps["topology"] == topology]
        low = mine[mine["phase"] == "low"]
        assert dict(zip(low["step"], low["deployment"], strict=True)) == {0: 0, 1: 1}  # round r on deployment r mod 2
        assert set(mine.loc[mine["phase"] == "sweep", "deployment"]) == {0}  # the search on the first
        assert set(mine.loc[mine["phase"] == "knee", "deployment"]) == {1}  # re-check round 1 on the second
        # The idle deployments (the twin included) were metered while this one was measured.
        assert (low["idle_cpu_seconds"] >= 0).all()


def test_resources_per_process(tiny_results: Path) -> None:
    resources = load_results(tiny_results).table("resources")
    processes = resources.groupby("topology")["process"].nunique()
    assert processes["monolith"] == 1
    assert processes["colocated"] == 1
    assert processes["microservices"] == 6
    assert (resources["peak_rss_bytes"] > 10 * 2**20).all()
    assert (resources["cpu_seconds"] >= 0).all()


def test_meta_records_what_each_experiment_was_planned_to_take_and_took(tiny_results: Path) -> None:
    meta = read_meta(tiny_results / "meta.json")
    assert set(meta.experiment_seconds) == set(meta.parameters.experiments or ())
    for timing in meta.experiment_seconds.values():
        assert timing.planned > 0
        assert timing.taken > 0
        assert timing.replanned is not None  # the plan once the experiment had re-planned
        assert timing.replanned > 0


def test_the_terminal_summary_reads_at_80_columns(tiny_results: Path) -> None:
    results = load_results(tiny_results)
    console = Console(width=80, record=True, file=io.StringIO())
    tables = summary_tables([network.EXPERIMENT], results.tables, results.meta)
    assert tables
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert "search bracket" in text
    assert "…" not in text  # no name or figure cut short
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_summary_names_the_rows_whose_intervals_are_wide() -> None:
    rows = []
    for figure, _ in network.SUMMARY_ROWS:
        for topology in ("monolith", "microservices"):
            wide = figure == "cpu_per_request_us" and topology == "microservices"
            rows.append(
                {
                    "figure": figure,
                    "topology": topology,
                    "method": "median",
                    "value": 2.0,
                    "low": 1.0 if wide else 1.9,
                    "high": 3.0 if wide else 2.1,
                    "n": 4,
                    "coverage": 0.88,
                    "wide": wide,
                    "ratio_value": 2.0 if topology != "monolith" else float("nan"),
                    "ratio_low": 1.9,
                    "ratio_high": 2.1,
                    "ratio_n": 4 if topology != "monolith" else 0,
                    "ratio_coverage": 0.88,
                    "ratio_wide": False,
                }
            )
    table = network.summary({network.ESTIMATES: pd.DataFrame(rows)}, {})
    assert table is not None
    caption = str(table.caption)
    assert "Intervals over ±10% of their median (CPU/request us)" in caption
    table = network.summary({network.ESTIMATES: pd.DataFrame(rows).assign(wide=False)}, {})
    assert table is not None
    assert "Intervals over" not in str(table.caption)

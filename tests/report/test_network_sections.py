"""The network experiment's sections (latency, load, resources, traces, decomposition) and verdict rows, from the
golden directory: the numbers of the results files, invalid runs flagged, missing tables said to be missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.report.context import Context
from bench.report.format import ms
from bench.report.render import banner
from bench.report.results import load_results
from plumbing.topology import TOPOLOGIES
from tests.report.conftest import copy_golden
from tests.report.views import cells, command, context, measured, texts, verdict, view

NETWORK_COMMAND = "archbench run --experiments network"


@pytest.fixture(scope="module")
def ctx(golden: Path) -> Context:
    return context(golden)


def test_numbers_are_those_of_the_results(ctx: Context, golden: Path) -> None:
    results = load_results(golden)
    steps, ops = results.table("steps"), results.table("ops")
    low = steps[(steps["topology"] == "monolith") & (steps["phase"] == "low")].iloc[0]
    # The monolith's low-load p50, as displayed, in its validity row and in the spectrum table.
    validity = view(ctx, "method").validity
    row = validity.row("step-monolith-low-0")
    assert row.text(validity.column("p50 ms")) == ms(low["p50"])
    assert row.text(validity.column("p99 ms")) == ms(low["p99"])
    spectrum = view(ctx, "spectrum").table
    assert spectrum.rows[0].text(spectrum.column("p50 ms")) == ms(low["p50"])
    # Each topology's checkout p50 at low load fills the verdict.
    p50 = texts(verdict(ctx).row("checkout p50 at low load"))
    for topology in TOPOLOGIES:
        row = ops[(ops["topology"] == topology) & (ops["phase"] == "low") & (ops["op"] == "checkout")].iloc[0]
        assert p50[topology] == f"{ms(row['p50'])} ms", topology
    # Every run has a row in the validity table.
    for _, step in steps.iterrows():
        validity.row(f"step-{step['topology']}-{step['phase']}-{step['step']}")


def test_sustainable_throughput_under_the_load_chart(ctx: Context) -> None:
    load = view(ctx, "load")
    assert [s.topology for s in load.sustained] == list(TOPOLOGIES)
    assert all(s.text == "1,200 req/s" for s in load.sustained)
    assert [s.invalid_steps for s in load.sustained] == [1, 1, 1]  # the 3,600 req/s step of each sweep
    assert (load.slo, load.budget) == ("p99 ≤ 50 ms", " and an error rate under 0.10%")


def test_an_invalid_step_is_marked(tmp_path: Path) -> None:
    copy = copy_golden(tmp_path / "flipped")
    steps = pd.read_parquet(copy / "steps.parquet")
    flip = (steps["topology"] == "monolith") & (steps["phase"] == "low")
    steps.loc[flip, "valid"] = False
    steps.loc[flip, "invalid_reasons"] = "flipped by the report test"
    steps.to_parquet(copy / "steps.parquet", index=False)
    ctx = context(copy)
    validity = view(ctx, "method").validity
    row = validity.row("step-monolith-low-0")
    assert row.css == "invalid"
    assert row.text(validity.column("valid")) == "INVALID"
    assert row.text(validity.column("reasons")) == "flipped by the report test"
    # The figures taken from that run (the monolith's low-load latencies and CPU) link to it.
    flagged = [r.name for r in verdict(ctx).rows if r.figures and "step-monolith-low-0" in cells(r)["monolith"].invalid]
    assert flagged == [
        "checkout p50 at low load",
        "checkout p99 at low load",
        "browse p50 at low load",
        "browse p99 at low load",
        "CPU per successful request, all processes, at low load",
    ]
    spectrum = view(ctx, "spectrum").table
    assert spectrum.rows[0].css == "invalid"
    assert [s.href for s in spectrum.rows[0].cells[-1]] == ["step-monolith-low-0"]
    counted = {c.what: (c.count, c.total, c.anchor) for c in banner(ctx).invalid}
    assert counted["network runs"] == (4, 15, "steps")  # the banner at the top


def test_tables_a_run_did_not_make_are_reported_as_not_measured(tmp_path: Path) -> None:
    copy = copy_golden(tmp_path / "partial")
    for name in ("traces", "spans"):
        (copy / f"{name}.parquet").unlink()
    ctx = context(copy)
    assert not measured(ctx, "waterfall")
    assert command("waterfall") == NETWORK_COMMAND
    row = verdict(ctx).row("internal calls per checkout")
    assert (row.figures, row.missing, row.command) == (None, "not measured", NETWORK_COMMAND)
    assert verdict(ctx).row("spans recorded per checkout").figures is None


def test_a_table_without_a_summary_says_so(tmp_path: Path) -> None:
    # A metric whose tables exist but whose fill gives nothing for a topology: "not in this run" in that cell.
    copy = copy_golden(tmp_path / "results")
    ops = pd.read_parquet(copy / "ops.parquet")
    ops[ops["topology"] != "colocated"].to_parquet(copy / "ops.parquet", index=False)
    row = verdict(context(copy)).row("checkout p50 at low load")
    assert row.figures is not None
    assert row.figures["colocated"] is None


def test_resources_processes_and_databases(ctx: Context) -> None:
    rows = verdict(ctx)
    assert texts(rows.row("processes to run")) == {"monolith": "1", "colocated": "1", "microservices": "6"}
    assert texts(rows.row("databases")) == {"monolith": "1", "colocated": "5", "microservices": "5"}
    resources = view(ctx, "resources").table
    assert {r.text(1) for r in resources.rows if r.text(0) == "microservices"} == {
        "gateway",
        "users",
        "inventory",
        "payments",
        "notifications",
        "orders",
    }


def test_traces_and_decomposition(ctx: Context) -> None:
    traces = view(ctx, "waterfall")
    assert traces.waterfall is not None
    breakdown = traces.breakdown
    assert {r.text(0) for r in breakdown.rows} == set(TOPOLOGIES)
    assert "in payments" in [h[0].text for h in breakdown.header]
    processes = texts(verdict(ctx).row("processes (log files) one checkout touches"))
    assert processes["monolith"] == "1"
    assert processes["colocated"] == "1"
    assert int(processes["microservices"]) > 1
    decomposition = view(ctx, "decomposition")
    assert decomposition.complete
    names = [r.text(0) for r in decomposition.table.rows]
    assert names[:2] == ["checkout p50 at low load (ms)", "CPU per request at low load (µs)"]
    row = decomposition.table.rows[1]
    mono, colo, micro = (float(row.text(i).replace(",", "")) for i in (1, 2, 3))
    share = float(row.text(6).rstrip("%")) / 100
    assert share == pytest.approx((colo - mono) / (micro - mono), abs=0.01)


def test_decomposition_needs_all_three_topologies(ctx: Context) -> None:
    two = Context(ctx.results, ["monolith", "microservices"])
    decomposition = view(two, "decomposition")
    assert not decomposition.complete  # the page says: needs monolith, colocated and microservices in one run
    assert decomposition.table is None

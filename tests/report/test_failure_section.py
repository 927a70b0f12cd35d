"""The failure-impact sections and verdict rows, as view models built from the failure experiment's tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench.report.charts import availability_text
from bench.report.context import Context
from plumbing.topology import TOPOLOGIES
from tests.report.failures import OPS, QUICK, failure_tables, with_failure
from tests.report.views import cells, command, context, measured, set_meta, texts, verdict, view

FAILURE_SECTIONS = ("failure-heatmap", "failure-timeline", "recovery", "consistency")
FAILURE_COMMAND = "archbench run --experiments failure"
LABELS = ("kill:payments", "error:payments 50%", "latency:inventory +200 ms")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    return context(with_failure(tmp_path_factory.mktemp("failure") / "results"))


def test_without_the_tables_the_sections_say_how_to_measure_them(tmp_path: Path) -> None:
    copy = with_failure(tmp_path / "results", drop=("failure_timeline", "failure_impact", "consistency"))
    ctx = context(copy)
    for section_id in FAILURE_SECTIONS:
        assert not measured(ctx, section_id), section_id
        assert command(section_id) == FAILURE_COMMAND
    rows = verdict(ctx)
    for name in ("blast radius (mean", "anomalies the audit found", "from the end of the load until every"):
        row = rows.row(name)
        assert (row.figures, row.missing, row.command) == (None, "not measured", FAILURE_COMMAND), name


def test_heatmap_and_timelines_show_every_fault_and_topology(ctx: Context) -> None:
    heatmap = view(ctx, "failure-heatmap")
    assert [p.topology for p in heatmap.panels] == list(TOPOLOGIES)
    for panel in heatmap.panels:
        assert [r.label for r in panel.rows] == list(LABELS)
        assert all(list(r.cells) == list(OPS) for r in panel.rows)
    shown = [availability_text(c.availability) for p in heatmap.panels for r in p.rows for c in r.cells.values()]
    # Monolith and colocated lose every operation to a killed process; microservices only user and checkout.
    assert shown.count("0%") == 5 + 5 + 2
    # The latency fault keeps its successes but breaks the SLO (browse, product and checkout).
    slow = [c for p in heatmap.panels for c in p.rows[2].cells.values() if c.p99 > 0.2]
    assert len(slow) == 3 * len(TOPOLOGIES)
    assert heatmap.panels[1].rows[1].valid is False  # colocated's error run is invalid
    assert heatmap.window == " for 1.50 s"
    assert heatmap.rate == " at 100 req/s"
    assert heatmap.chart.svg.count("<svg") == 1
    timeline = view(ctx, "failure-timeline")
    assert [r.label for r in timeline.rows] == list(LABELS)
    assert all(r.window == (1.5, 3.0) for r in timeline.rows)  # warm-up 0.5 + 1 s before, for 1.5 s
    assert [s.topology for s in timeline.rows[0].mix] == list(TOPOLOGIES)
    assert [s.valid for s in timeline.rows[1].mix] == [True, False, True]
    assert timeline.chart.svg.count("<svg") == 1


def test_recovery_table_has_the_numbers_of_the_impact_table(ctx: Context) -> None:
    recovery = view(ctx, "recovery").table
    impact = failure_tables(QUICK)["failure_impact"]
    radius = recovery.column("blast radius")
    for row in impact.itertuples():
        assert recovery.row(f"fault-{row.topology}-{str(row.fault).replace(':', '_')}").text(radius) == (
            f"{row.blast_radius:.0%}"
        )
    kill = recovery.row("fault-microservices-kill_payments")
    assert kill.text(radius) == "30%"  # user (15) + checkout (15) of the default mix
    hurt = kill.cells[recovery.column("operations hurt during the window")]
    assert [(s.text, s.kind) for s in hurt] == [("user 0%", "nw"), (", ", ""), ("checkout 0%", "nw")]
    assert kill.text(recovery.column("restart")) == "500 ms"
    latency = recovery.row("fault-monolith-latency_inventory")
    assert "browse p99 202 ms" in latency.text(recovery.column("operations hurt during the window"))
    invalid = recovery.row("fault-colocated-error_payments")
    assert invalid.css == "invalid"
    assert invalid.text(recovery.column("valid")) == "INVALID"
    assert "(planted)" in invalid.text(recovery.column("reasons"))


def test_verdict_failure_rows_come_from_the_fault_runs(ctx: Context) -> None:
    radius = failure_tables(QUICK)["failure_impact"].pivot(index="topology", columns="fault", values="blast_radius")
    # Each fault hurts what it should (weights of the default mix: browse 30, product 30, user 15, checkout 15, ...).
    assert radius.loc["monolith"].to_dict() == pytest.approx(
        {"kill:payments": 1.0, "error:payments": 0.15, "latency:inventory": 0.75}
    )
    assert radius.loc["microservices", "kill:payments"] == pytest.approx(0.30)
    rows = verdict(ctx)
    worst = texts(rows.row("blast radius: share"))
    assert worst["monolith"] == "100% (kill:payments)"
    # A latency fault is worse; the window's sample cannot tell whether one more operation was hurt: bounds.
    assert worst["microservices"] == "75% (75%–100%) (latency:inventory)"
    mean = rows.row("blast radius (mean")
    impact = failure_tables(QUICK)["failure_impact"].groupby("topology")
    low, high = impact["blast_radius_low"].mean(), impact["blast_radius_high"].mean()
    for topology in TOPOLOGIES:
        bounds = (
            f" ({low[topology]:.0%}–{high[topology]:.0%})" if f"{low[topology]:.0%}" != f"{high[topology]:.0%}" else ""
        )
        assert texts(mean)[topology] == f"{radius.loc[topology].mean():.0%}{bounds} over 3 faults"
    # Colocated's mean includes its invalid error run: flagged, linking to that run's row.
    assert cells(mean)["colocated"].invalid == ("fault-colocated-error_payments",)
    recover = texts(rows.row("time to recover"))
    assert list(recover.values()) == ["0 s (every fault)"] * len(TOPOLOGIES)
    restart = texts(rows.row("restart of a killed process"))
    assert restart["monolith"] == "250 ms (kill:payments)"
    assert restart["microservices"] == "500 ms (kill:payments)"


def test_verdict_rows_fill_from_the_tables_that_exist(tmp_path: Path) -> None:
    copy = with_failure(tmp_path / "results", drop=("failure_timeline", "consistency"))
    impact = pd.DataFrame(
        [
            {"topology": t, "fault": fault, "blast_radius": radius, "time_to_recover": 1.5}
            for t in TOPOLOGIES
            for fault, radius in (("kill payments", 1.0 if t == "monolith" else 0.5), ("kill gateway", 1.0))
        ]
    )
    impact.to_parquet(copy / "failure_impact.parquet", index=False)
    rows = verdict(context(copy))
    worst = texts(rows.row("blast radius: share"))
    assert worst["monolith"] == "100% (every fault)"
    assert worst["microservices"] == "100% (kill gateway)"
    blast = rows.row("blast radius (mean")
    assert texts(blast)["monolith"] == "100% over 2 faults"
    assert texts(blast)["colocated"] == "75% over 2 faults"
    assert blast.figures is not None
    assert blast.figures["colocated"] is not None
    assert blast.figures["colocated"].ratio == "×0.75 vs monolith"
    assert blast.figures["monolith"] is not None
    assert blast.figures["monolith"].ratio == "baseline"
    # The consistency audit is another table: still not measured, with its command.
    consistency = rows.row("anomalies the audit found")
    assert (consistency.figures, consistency.command) == (None, FAILURE_COMMAND)


def test_a_run_of_the_failure_experiment_alone(tmp_path: Path) -> None:
    copy = with_failure(tmp_path / "results")
    for path in copy.glob("*.parquet"):
        if path.stem not in ("failure_timeline", "failure_impact", "consistency"):
            path.unlink()
    set_meta(copy, topologies=[], experiments=["failure"])  # the topologies come from the tables
    ctx = context(copy)
    assert ctx.topologies == list(TOPOLOGIES)
    assert list(verdict(ctx).topologies) == list(TOPOLOGIES)
    recovery = view(ctx, "recovery").table
    for topology in TOPOLOGIES:
        recovery.row(f"fault-{topology}-kill_payments")
    assert not measured(ctx, "spectrum")
    assert measured(ctx, "recovery")
    method = view(ctx, "method")
    assert [p.experiment for p in method.left] == ["failure"]
    assert method.network is None


def test_partial_failure_tables_render_what_they_have(tmp_path: Path) -> None:
    ctx = context(with_failure(tmp_path / "results", drop=("failure_timeline", "consistency")))
    assert not measured(ctx, "failure-timeline")
    assert not measured(ctx, "consistency")
    assert measured(ctx, "failure-heatmap")
    assert view(ctx, "failure-heatmap").chart.svg.startswith("<svg")
    assert verdict(ctx).row("anomalies the audit found").figures is None


def test_the_golden_run_names_each_fault_with_its_profile(golden: Path) -> None:
    ctx = context(golden)
    assert [f.label for f in ctx.faults()] == [
        "kill:payments (naive)",
        "kill:payments (resilient)",
        "error:payments (naive)",
        "error:payments (resilient)",
    ]
    heatmap = view(ctx, "failure-heatmap")
    assert [r.label for r in heatmap.panels[0].rows][2] == "error:payments 50% (naive)"
    recovery = view(ctx, "recovery").table
    assert recovery.row("fault-microservices-kill_payments__resilient_").text(0) == "kill:payments (resilient)"
    assert all(r.window == (pytest.approx(0.9), pytest.approx(2.1)) for r in view(ctx, "failure-timeline").rows)
    assert not math.isnan(heatmap.panels[0].rows[0].cells["browse"].availability)


def test_the_terminal_summary_defines_the_invalid_mark_only_where_a_row_carries_it() -> None:
    from bench.experiments import failure

    # One resilience profile (the quick run's); colocated's error run is invalid.
    tables = {name: frame.assign(profile="resilient") for name, frame in failure_tables(QUICK).items()}
    flagged = failure.summary(tables, {})
    assert flagged is not None
    assert "* invalid run" in str(flagged.caption)
    tables["failure_impact"] = tables["failure_impact"].assign(load_valid=True)
    clean = failure.summary(tables, {})
    assert clean is not None
    assert "invalid" not in str(clean.caption)

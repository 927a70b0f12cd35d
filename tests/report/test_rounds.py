"""A network run measured in rounds: every part of the report shows a per-topology figure as the verdict does (the
median over rounds with its interval, or the largest peak RSS of the low-load rounds) and says what it is; the knee
is shown round by round."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from bench.report import render_report
from bench.report.context import Context
from bench.report.view import Content, Row, Table, plain
from tests.report.rounds_tables import SLO, write_rounds
from tests.report.views import cells, context, texts, verdict, view

CPU_ROW = "CPU per successful request, all processes, at low load"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rounds(tmp_path_factory.mktemp("rounds") / "results")


@pytest.fixture(scope="module")
def ctx(results: Path) -> Context:
    return context(results)


def rows_of(table: Table, topology: str) -> list[Row]:
    return [r for r in table.rows if r.text(0) == topology]


def numbers(content: Content) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", plain(content))]


def test_cpu_per_request_is_the_verdicts_everywhere(ctx: Context) -> None:
    row = verdict(ctx).row(CPU_ROW)
    assert texts(row) == {
        "monolith": "420 µs (400–440)",
        "colocated": "650 µs (600–700)",
        "microservices": "1,500 µs (1,400–1,600)",
    }
    assert row.basis == "median of 3 rounds, 75% interval"
    resources = view(ctx, "resources")
    assert resources.rounds == 3
    assert resources.cpu_basis == row.basis
    column = resources.table.column("CPU µs/request at low load, median")
    (monolith,) = rows_of(resources.table, "monolith")
    assert monolith.text(column) == "420 (400–440)"
    total = rows_of(resources.table, "microservices")[-1]
    assert (total.text(1), total.text(column), total.css) == ("all processes", "1,500 (1,400–1,600)", "sum")
    # Each process: its own median over the rounds (the gateway takes two thirds of each round's CPU).
    gateway = rows_of(resources.table, "microservices")[0]
    assert (gateway.text(1), gateway.text(column)) == ("gateway", "1,000 (933–1,067)")
    decomposition = {r.text(0): r for r in view(ctx, "decomposition").table.rows}
    cpu = decomposition["CPU per request at low load (µs)"]
    assert [cpu.text(i) for i in (1, 2, 3)] == ["420", "650", "1,500"]


def test_latency_cells_hold_seconds_whatever_the_estimates_unit(ctx: Context) -> None:
    # The estimates table holds milliseconds: the decomposition shows the checkout p50 in ms, not a thousand times it.
    decomposition = {r.text(0): r for r in view(ctx, "decomposition").table.rows}
    checkout = decomposition["checkout p50 at low load (ms)"]
    assert [checkout.text(i) for i in (1, 2, 3)] == ["1.05", "1.50", "2.40"]
    p50 = cells(verdict(ctx).row("checkout p50 at low load"))
    assert p50["colocated"].value == pytest.approx(0.0015)


def test_a_figure_from_fewer_rounds_says_so(ctx: Context) -> None:
    # The generator's lag voided the monolith's p50s in round 1: its medians are over 2 rounds, and its cells say so.
    row = verdict(ctx).row("checkout p50 at low load")
    assert row.basis == "median of 3 rounds, 75% interval"
    assert row.figures is not None
    monolith = row.figures["monolith"]
    assert monolith is not None
    assert (monolith.cell.text, monolith.note) == ("1.05 ms (1–1.10)", "median of 2 of 3 rounds, 50% interval")
    colocated = row.figures["colocated"]
    assert colocated is not None
    assert colocated.note == ""
    # The page explains how to read a median over rounds.
    assert verdict(ctx).rounds


def test_the_report_computes_what_the_estimates_table_holds(ctx: Context, tmp_path: Path) -> None:
    # Without the estimates table the report computes the same medians, intervals and paired ratios from the rounds.
    bare = context(write_rounds(tmp_path / "bare", without=("estimates",)))
    for name in (CPU_ROW, "checkout p50 at low load", "browse p50 at low load", "sustainable throughput"):
        with_table, without = verdict(ctx).row(name), verdict(bare).row(name)
        assert with_table.figures is not None
        assert without.figures is not None
        assert {t: (f.cell.text, f.ratio) for t, f in with_table.figures.items() if f} == {
            t: (f.cell.text, f.ratio) for t, f in without.figures.items() if f
        }, name


def test_memory_is_the_largest_peak_of_the_low_load_rounds(ctx: Context) -> None:
    row = verdict(ctx).row("memory: peak RSS of all processes")
    assert texts(row) == {"monolith": "52 MiB", "colocated": "58 MiB", "microservices": "295 MiB"}
    assert row.basis == "largest of 3 low-load rounds"
    memory = cells(row)
    # The monolith's invalid re-check probe had a larger peak: a knee probe is not where memory is read.
    assert memory["monolith"].invalid == ()
    # colocated's largest peak was in its invalid round 1: flagged, linking to that run.
    assert memory["colocated"].invalid == ("step-colocated-low-1",)
    resources = view(ctx, "resources")
    assert resources.memory_basis == row.basis
    column = resources.table.column("peak RSS MiB at low load, largest")
    assert [r.text(column) for r in rows_of(resources.table, "microservices")] == ["148", "148", "295"]
    (colocated,) = rows_of(resources.table, "colocated")
    assert [s.href for s in colocated.cells[-1]] == ["step-colocated-low-1"]


def test_the_knee_round_by_round(ctx: Context) -> None:
    load = view(ctx, "load")
    knee = load.knee
    assert knee is not None
    assert load.rounds == 3
    monolith = knee.row("knee-monolith")
    index = knee.rows.index(monolith)
    search, first, second, median = knee.rows[index : index + 4]
    # Round 0: the search's bracket, its highest passing and lowest failing rate, with their p99.
    assert [search.text(i) for i in range(1, 7)] == [
        "search: highest pass, lowest fail",
        "4,900",
        "30",
        "5,400",
        "90",
        "5,100",
    ]
    assert [s.kind for s in search.cells[3]] == [""]  # within the SLO
    assert [s.kind for s in search.cells[5]] == ["bad"]  # over it
    assert first.text(1) == "re-check 1"
    assert first.text(6) == "at most 4,800"  # its lower probe failed already
    assert second.text(6) == "5,300"
    assert second.css == "invalid"  # its upper probe is an invalid run, flagged and linked
    assert [s.href for s in second.cells[5] if s.kind == "flag"] == ["step-monolith-knee-10"]
    # The median row is the verdict's figure.
    assert median.css == "sum"
    assert median.text(1) == "median"
    assert median.text(6) == "5,100 (4,800–5,300) median of 3 rounds, 75% interval"
    assert texts(verdict(ctx).row("sustainable throughput"))["monolith"] == "5,100 req/s (4,800–5,300)"
    both_passed = [r.text(6) for r in knee.rows if r.text(6).startswith("at least")]
    assert both_passed == ["at least 2,500"]  # colocated's round 2
    microservices = knee.row("knee-microservices")
    assert [s.href for s in microservices.cells[5] if s.kind == "flag"] == ["step-microservices-sweep-6"]
    said = {s.topology: s for s in load.sustained}
    assert said["monolith"].text == "5,100 req/s (4,800–5,300)"
    assert said["monolith"].bounds == "in 1 of 3 rounds the lower probe failed already: at most its rate"
    assert said["colocated"].bounds == "in 1 of 3 rounds both probes passed: at least the upper rate"
    assert said["microservices"].bounds == ""


def test_the_verdict_links_the_knee(ctx: Context, golden: Path) -> None:
    details = verdict(ctx).row("sustainable throughput").details
    assert details is not None
    assert details.anchor == "knee"
    # An older run has no knee table, and no link to one.
    assert verdict(context(golden)).row("sustainable throughput").details is None
    assert view(context(golden), "load").knee is None


def test_the_spectrum_is_the_median_over_rounds(ctx: Context) -> None:
    spectrum = view(ctx, "spectrum")
    assert spectrum.rounds == 3
    table = spectrum.table
    p50 = table.column("p50 ms")
    checkout = next(r for r in rows_of(table, "monolith") if r.text(1) == "checkout")
    # The verdict's checkout p50, from the same two rounds.
    assert checkout.text(p50) == "1.05 (1–1.10) 2 of 3 rounds"
    assert checkout.text(table.column("requests a round")) == "80"
    # Percentiles rise along a row: every figure of a row comes from the rounds that can carry it.
    first, last = p50, table.column("max ms")
    for row in table.rows:
        values = [numbers(row.cells[i])[0] for i in range(first, last + 1)]
        assert values == sorted(values), row.text(0)
    colocated = rows_of(table, "colocated")
    assert all(r.css == "invalid" for r in colocated)  # its round 1 is an invalid run
    assert [s.href for s in colocated[0].cells[-1]] == ["step-colocated-low-1"]


def test_searches_without_a_common_rate_say_so(tmp_path: Path) -> None:
    # Each topology's search started at its own rate: no rate is common to all, so no CPU at a common rate.
    results = write_rounds(tmp_path / "results")
    steps = pd.read_parquet(results / "steps.parquet")
    theirs = (steps["topology"] == "microservices") & steps["target_rate"].isin([800.0, 1600.0])
    steps.loc[theirs, "target_rate"] = steps.loc[theirs, "target_rate"] - 100.0
    steps.to_parquet(results / "steps.parquet", index=False)
    ctx = context(results)
    row = verdict(ctx).row("CPU per successful request at the highest rate every topology ran")
    assert set(texts(row).values()) == {"no rate that every topology's search ran"}
    assert view(ctx, "resources").common == ""
    names = [r.text(0) for r in view(ctx, "decomposition").table.rows]
    assert names == ["checkout p50 at low load (ms)", "CPU per request at low load (µs)"]


def test_a_p99_no_round_resolves_is_not_shown(ctx: Context) -> None:
    row = verdict(ctx).row("checkout p99 at low load")
    assert row.figures is not None
    for figure in row.figures.values():
        assert figure is not None
        assert figure.cell.value is None
        assert figure.cell.text.startswith("not resolved: p99 needs")
        assert figure.ratio == ""  # not even "baseline"


def test_the_validity_table_gives_each_run_its_round(ctx: Context) -> None:
    validity = view(ctx, "method").validity
    assert validity is not None
    column = validity.column("round")
    assert validity.row("step-monolith-knee-8").text(column) == "1"
    assert validity.row("step-monolith-traced-0").text(column) == "—"
    assert view(ctx, "method").lag_per_figure


def test_the_page_renders_and_its_links_have_targets(results: Path, tmp_path: Path) -> None:
    page = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert {ref[1:] for ref in re.findall(r'href="(#[^"]*)"', page)} <= ids
    assert 'href="#knee"' in page
    assert "The knee, round by round" in page
    assert f"p99 ≤ {SLO * 1e3:g} ms" in page


def test_an_older_run_reads_its_single_runs(golden: Path) -> None:
    ctx = context(golden)
    assert not verdict(ctx).rounds
    assert view(ctx, "resources").rounds == 0
    assert view(ctx, "spectrum").rounds == 0
    assert view(ctx, "decomposition").rounds == 0
    row = verdict(ctx).row("memory: peak RSS of all processes")
    assert row.basis == "the step with the highest total"
    assert "round" not in [plain(h) for h in view(ctx, "method").validity.header]
    steps = pd.read_parquet(golden / "steps.parquet")
    assert "round" not in steps

"""Failure impact: availability per fault and operation (a heatmap per topology), second-by-second timelines, and
the blast radius and recovery of each fault run; its verdict rows are the blast radius, the time to recover and the
restart of a killed process."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from bench.common.names import HEALTHY_SUCCESS
from bench.report import charts
from bench.report.context import Context, Fault, fault_anchor, fault_of
from bench.report.format import availability_text, detect_text, duration_text, num, recover_text
from bench.report.sections.common import FAILURE, topo
from bench.report.view import INVALID, Cell, Figure, Fill, Metric, Part, Row, Section, Span, Table, table, text


def topology_fault_rows(ctx: Context, table_: str, topology: str, column: str | None = None) -> pd.DataFrame:
    """``topology``'s rows of a failure table (``failure_impact``, ``consistency``), with a value in ``column`` if
    given."""
    rows = ctx.fault_rows(table_, topology=topology)
    if column is not None and column not in rows:
        return rows.iloc[0:0]
    return rows[rows[column].notna()] if column is not None else rows


def faults_invalid(ctx: Context, rows: pd.DataFrame) -> tuple[str, ...]:
    """The anchors of the invalid load runs among ``rows`` (rows of a failure table)."""
    return tuple(a for _, r in rows.iterrows() for a in ctx.fault_invalid(str(r["topology"]), fault_of(r)))


def bounds_text(rows: pd.DataFrame, column: str, fmt: str, reduce: str) -> str:
    """ " (low–high)" from the ``<column>_low`` and ``<column>_high`` columns of ``rows`` (reduced by ``reduce``:
    "mean" or the row of the worst ``column``), where the experiment wrote them and they differ; "" otherwise."""
    low, high = f"{column}_low", f"{column}_high"
    if low not in rows or high not in rows or rows[[low, high]].isna().all().all():
        return ""
    values = rows[[low, high]].astype(float)
    a, b = (values.mean() if reduce == "mean" else values.iloc[0]).to_numpy()
    low_text, high_text = fmt.format(a), fmt.format(b)
    return "" if low_text == high_text else f" ({low_text}–{high_text})"  # a conclusive sample needs no bounds


def mean_over_faults(table_: str, column: str, fmt: str) -> Fill:
    """The mean of ``column`` over a topology's fault runs (rows of ``table_``), with the mean of its bounds where
    the experiment wrote them (what each fault window's sample could tell)."""

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            rows = topology_fault_rows(ctx, table_, topology, column)
            if len(rows):
                value = float(rows[column].astype(float).mean())
                text_ = f"{fmt.format(value)}{bounds_text(rows, column, fmt, 'mean')} over {len(rows)} faults"
                out[topology] = Cell(value, text_, faults_invalid(ctx, rows))
        return out

    return fill


def worst_fault(table_: str, column: str, said: Callable[[float], str], *, load_figure: bool = True) -> Fill:
    """The largest ``column`` over a topology's fault runs (rows of ``table_``), and the fault that had it.

    A ``load_figure`` comes from the load run, so an invalid load run flags it; an audit's figure does not (the
    databases say what they say, whether or not the generator kept its schedule)."""

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            rows = topology_fault_rows(ctx, table_, topology, column)
            if rows.empty:
                continue
            values = rows[column].astype(float)
            worst = float(values.max())
            at = rows[values == worst]
            names = [fault_of(r).label for _, r in at.iterrows()]
            if len(names) == 1:
                which = names[0]
            else:
                which = "every fault" if len(names) == len(rows) else f"{names[0]} and {len(names) - 1} more"
            invalid = faults_invalid(ctx, at) if load_figure else ()
            bounds = bounds_text(at, column, "{:.0%}", "worst") if column == "blast_radius" else ""
            out[topology] = Cell(worst, f"{said(worst)}{bounds} ({which})", invalid)
        return out

    return fill


def failure_ops(ctx: Context) -> list[str]:
    """The operations of the mix, in the order the experiment wrote them."""
    columns = ctx.table("failure_impact").columns
    return [str(c).removeprefix("availability_") for c in columns if str(c).startswith("availability_")]


def fault_runs(ctx: Context, table_: str) -> list[tuple[Fault, str, pd.Series]]:
    """(fault, topology, row) of ``table_``, fault by fault in the matrix's order, topologies side by side."""
    out = []
    for fault in ctx.faults():
        for topology in ctx.failure_topologies():
            rows = ctx.fault_rows(table_, fault, topology)
            if len(rows):
                out.append((fault, topology, rows.iloc[0]))
    return out


def hurt_ops(ctx: Context, row: pd.Series) -> list[str]:
    """The operations a fault run counts in its blast radius, each with what hurt it (success, p99)."""
    slo, out = ctx.failure_slo, []
    for op in failure_ops(ctx):
        success, p99 = float(row.get(f"availability_{op}", math.nan)), float(row.get(f"p99_{op}", math.nan))
        why = []
        if success < HEALTHY_SUCCESS:
            why.append(availability_text(success))
        if slo is not None and p99 > slo:
            why.append(f"p99 {duration_text(p99)}")
        if why:
            out.append(f"{op} {', '.join(why)}")
    return out


def param(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Heatmap:
    chart: Figure
    panels: tuple[charts.Heatmap, ...]
    window: str
    rate: str
    healthy: str


def heatmap(ctx: Context) -> Heatmap:
    ops, panels = failure_ops(ctx), []
    for topology in ctx.failure_topologies():
        rows = []
        for fault in ctx.faults():
            run = ctx.fault_run(topology, fault)
            if run is None:  # keep the row, empty: every panel lists the same faults in the same order
                rows.append(charts.FaultRow(ctx.fault_label(fault), {}))
                continue
            cells = {
                op: charts.HeatCell(
                    float(run.get(f"availability_{op}", math.nan)), float(run.get(f"p99_{op}", math.nan))
                )
                for op in ops
            }
            rows.append(charts.FaultRow(ctx.fault_label(fault), cells, not ctx.fault_invalid(topology, fault)))
        panels.append(charts.Heatmap(topology, rows))
    svg = charts.svg_of(
        charts.availability_heatmap(panels, ops, ctx.failure_slo),
        "heatmap",
        "availability per fault and operation, per topology",
    )
    window, rate = param(ctx.failure.window), param(ctx.failure.rate)
    return Heatmap(
        Figure(svg, "heatmap"),
        tuple(panels),
        f" for {num(window)} s" if window is not None else "",
        f" at {num(rate)} req/s" if rate is not None else "",
        f"{HEALTHY_SUCCESS:.0%}",
    )


def mix_series(timeline: pd.DataFrame, topology: str, valid: bool) -> charts.Series:
    """Per second over the whole mix: successes over requests, and the worst operation's p99 (the per-second
    percentiles of the whole mix are not in the table; the worst operation is what the recovery times use)."""
    per = timeline.groupby("second").agg(
        requests=("requests", "sum"), successes=("successes", "sum"), p99=("p99", "max")
    )
    success = (per["successes"] / per["requests"].where(per["requests"] > 0)).astype(float)
    return charts.Series(topology, [float(s) for s in per.index], list(success), [float(v) for v in per["p99"]], valid)


def op_series(timeline: pd.DataFrame, topology: str, op: str, valid: bool) -> charts.Series:
    rows = timeline[timeline["op"] == op].sort_values("second")
    seconds = [float(s) for s in rows["second"]]
    return charts.Series(
        topology, seconds, [float(v) for v in rows["success_ratio"]], [float(v) for v in rows["p99"]], valid
    )


@dataclass(frozen=True)
class Timeline:
    chart: Figure
    rows: tuple[charts.TimelineRow, ...]


def timeline(ctx: Context) -> Timeline:
    rows = []
    for fault in ctx.faults():
        mix, checkout = [], []
        for topology in ctx.failure_topologies():
            mine = ctx.fault_rows("failure_timeline", fault, topology)
            if mine.empty:
                continue
            valid = not ctx.fault_invalid(topology, fault)
            mix.append(mix_series(mine, topology, valid))
            checkout.append(op_series(mine, topology, "checkout", valid))
        if mix:
            rows.append(charts.TimelineRow(ctx.fault_label(fault), ctx.fault_window(fault), mix, checkout))
    svg = charts.svg_of(charts.timeline_chart(rows, ctx.failure_slo), "timeline", "per-second timelines of each fault")
    return Timeline(Figure(svg, "timeline"), tuple(rows))


@dataclass(frozen=True)
class Recovery:
    table: Table
    healthy: str
    slo: str


def recovery(ctx: Context) -> Recovery:
    header = [
        "fault",
        "topology",
        "blast radius",
        "operations hurt during the window",
        "time to detect",
        "time to recover",
        "restart",
        "valid",
        "reasons",
    ]
    rows = []
    for fault, topology, run in fault_runs(ctx, "failure_impact"):
        invalid = ctx.fault_invalid(topology, fault)
        hurt = hurt_ops(ctx, run)
        listed: list[Span] = []
        for op in hurt:
            listed += [*([Span(", ")] if listed else []), Span(op, "nw")]
        cells = (
            text(ctx.fault_label(fault)),
            topo(topology),
            text(f"{float(run['blast_radius']):.0%}" if "blast_radius" in run else "—"),
            tuple(listed) or (Span("none", "nm"),),
            (Span(detect_text(float(run.get("time_to_detect", math.nan))), "nw"),),
            (Span(recover_text(float(run.get("time_to_recover", math.nan))), "nw"),),
            (Span(duration_text(float(run.get("restart_seconds", math.nan))), "nw"),),
            INVALID if invalid else text("yes"),
            (Span(str(run.get("load_invalid_reasons", "") or ""), "why"),),
        )
        rows.append(Row(cells, fault_anchor(topology, fault), "invalid" if invalid else ""))
    slo = ctx.failure_slo
    return Recovery(
        table(header, rows, left=2, text=(3, len(header) - 1), css="wide"),
        f"{HEALTHY_SUCCESS:.0%}",
        f"p99 over {num(slo * 1e3)} ms" if slo is not None else "p99 over the SLO",
    )


PART = Part(
    sections=(
        Section(
            "failure-heatmap",
            "Failure impact: availability per fault and operation",
            heatmap,
            "failure_heatmap.html.j2",
            ("failure_impact",),
            FAILURE,
        ),
        Section(
            "failure-timeline",
            "Failure impact, second by second",
            timeline,
            "failure_timeline.html.j2",
            ("failure_timeline",),
            FAILURE,
        ),
        Section("recovery", "Blast radius and recovery", recovery, "recovery.html.j2", ("failure_impact",), FAILURE),
    ),
    metrics=(
        Metric(
            "Failure impact",
            "blast radius: share of the operation mix hurt while one part fails (worst fault)",
            ("failure_impact",),
            FAILURE,
            worst_fault("failure_impact", "blast_radius", "{:.0%}".format),
        ),
        Metric(
            "Failure impact",
            "blast radius (mean over the faults)",
            ("failure_impact",),
            FAILURE,
            mean_over_faults("failure_impact", "blast_radius", "{:.0%}"),
            headline=True,
        ),
        Metric(
            "Failure impact",
            "time to recover after the fault ends, an upper bound (worst fault)",
            ("failure_impact",),
            FAILURE,
            worst_fault("failure_impact", "time_to_recover", recover_text),
        ),
        Metric(
            "Failure impact",
            "restart of a killed process until it is ready (slowest)",
            ("failure_impact",),
            FAILURE,
            worst_fault("failure_impact", "restart_seconds", duration_text),
        ),
    ),
)

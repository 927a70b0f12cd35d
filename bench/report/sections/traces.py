"""Where the time goes: one traced checkout per topology as a waterfall, and the per-operation breakdown of traced
requests; its verdict rows are the internal calls, bytes and time between components of a checkout (network
overhead) and the spans and processes one checkout touches (debugging)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import pandas as pd

from bench.report import charts
from bench.report.context import COMPONENT_ORDER, Context
from bench.report.format import median, ms, num
from bench.report.sections.common import NETWORK, topo, valid_or
from bench.report.view import Cell, Figure, Fill, Metric, Part, Row, Section, Table, flag, table, text


def traced_median(op: str, column: str, unit: str) -> Fill:
    """The nearest-rank median of ``column`` over the traced ``op`` requests, from the ``traces`` table."""

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            traces = ctx.traces(topology, op)
            if len(traces) and column in traces:
                value = median(traces[column].fillna(0.0))
                out[topology] = Cell(value, f"{num(value)}{unit}", ctx.invalid(topology, "traced"))
        return out

    return fill


def spans_in(group: pd.DataFrame, hosts: dict[str, str]) -> float:
    return float(len(group))


def processes_in(group: pd.DataFrame, hosts: dict[str, str]) -> float:
    apps = set(group["app"])
    return float(len({hosts.get(app, app) for app in apps}))


def trace_fill(op: str, measure: Callable[[pd.DataFrame, dict[str, str]], float], unit: str) -> Fill:
    """The nearest-rank median over traced ``op`` requests of ``measure(spans of one trace, component -> process)``."""

    def fill(ctx: Context) -> dict[str, Cell]:
        spans = ctx.table("spans")
        out = {}
        for topology in ctx.topologies:
            ids = set(ctx.traces(topology, op).get("trace_id", pd.Series(dtype=str)))
            mine = spans[(spans["topology"] == topology) & spans["trace_id"].isin(ids)]
            if mine.empty:
                continue
            hosts = ctx.process_of(topology)
            values = pd.Series([measure(group, hosts) for _, group in mine.groupby("trace_id")], dtype=float)
            value = median(values)
            out[topology] = Cell(value, f"{num(value)}{unit}", ctx.invalid(topology, "traced"))
        return out

    return fill


def median_trace(ctx: Context, topology: str, op: str) -> pd.Series | None:
    """The traced ``op`` request whose harness-side latency is the nearest-rank median."""
    traces = ctx.traces(topology, op)
    if traces.empty:
        return None
    target = median(traces["latency_us"])
    return traces[traces["latency_us"] == target].iloc[0]


def waterfall_of(ctx: Context, topology: str, trace: pd.Series, count: int) -> charts.Waterfall:
    spans = ctx.table("spans")
    mine = spans[(spans["topology"] == topology) & (spans["trace_id"] == trace["trace_id"])]
    server, client = mine[mine["kind"] == "server"], mine[mine["kind"] == "client"]
    roots = server[~server["parent_id"].isin(set(mine["span_id"]))]
    title = (
        f"{topology}: the median of {count} traced checkouts; the harness saw {ms(trace['latency_us'] / 1e6)} ms, "
        f"the entry process {ms(trace['entry_us'] / 1e6)} ms"
    )
    valid = not ctx.invalid(topology, "traced")
    if roots.empty:
        return charts.Waterfall(topology, title, [], valid)
    root = roots.iloc[0]
    t0 = float(root["start_us"])
    app = str(root["app"])
    bars = [charts.Bar(f"{app}  {root['name']}", app, app, 0.0, float(root["duration_us"]))]
    callee_of = {str(s["parent_id"]): s for _, s in server.iterrows()}
    for _, call in client.sort_values("start_us").iterrows():
        callee = callee_of.get(str(call["span_id"]))
        name = str(callee["name"]) if callee is not None else str(call["name"])
        app = str(callee["app"]) if callee is not None else "?"
        bars.append(
            charts.Bar(
                f"{call['app']} → {app}  {name}",
                str(call["app"]),
                app,
                float(callee["start_us"]) - t0 if callee is not None else math.nan,
                float(callee["duration_us"]) if callee is not None else math.nan,
                float(call["start_us"]) - t0,
                float(call["duration_us"]),
            )
        )
    return charts.Waterfall(topology, title, bars, valid)


BREAKDOWN_COLUMNS: Final = (
    ("latency_us", "harness"),
    ("client_to_entry_us", "outside entry"),
    ("entry_us", "entry span"),
    ("internal_calls", "calls"),
    ("wire_bytes", "wire bytes"),
    ("between_us", "between"),
)


def breakdown(ctx: Context) -> Table:
    traces = ctx.table("traces")
    found = [str(c)[3:-3] for c in traces.columns if re.fullmatch(r"in_.+_us", str(c)) and traces[c].notna().any()]
    components = [c for c in COMPONENT_ORDER if c in found] + sorted(set(found) - set(COMPONENT_ORDER))
    header = ["topology", "operation", "traced", *(h for _, h in BREAKDOWN_COLUMNS)]
    header += [*(f"in {c}" for c in components), "valid"]
    rows = []
    for topology in ctx.topologies:
        mine = traces[traces["topology"] == topology]
        invalid = ctx.invalid(topology, "traced")
        for op, group in mine.groupby("op", sort=True):
            figures = [text(num(median(group[col])) if col in group else "—") for col, _ in BREAKDOWN_COLUMNS]
            inside = [
                text(num(median(group[f"in_{c}_us"].dropna())) if group[f"in_{c}_us"].notna().any() else "—")
                for c in components
            ]
            cells = (topo(topology), text(op), text(len(group)), *figures, *inside, valid_or(flag(invalid)))
            rows.append(Row(cells, css="invalid" if invalid else ""))
    return table(header, rows, left=2, css="wide")


@dataclass(frozen=True)
class Traces:
    waterfall: Figure | None
    breakdown: Table


def traces(ctx: Context) -> Traces:
    waterfalls = []
    for topology in ctx.topologies:
        trace = median_trace(ctx, topology, "checkout")
        if trace is not None:
            waterfalls.append(waterfall_of(ctx, topology, trace, len(ctx.traces(topology, "checkout"))))
    chart = None
    if waterfalls and ctx.has("spans"):
        svg = charts.svg_of(charts.waterfall_chart(waterfalls), "waterfall", "waterfall of one traced checkout")
        chart = Figure(svg, "waterfall")
    return Traces(chart, breakdown(ctx))


PART = Part(
    sections=(
        Section(
            "waterfall",
            "Where the time goes: one traced checkout per topology",
            traces,
            "waterfall.html.j2",
            ("traces",),
        ),
    ),
    metrics=(
        Metric(
            "Network overhead",
            "internal calls per checkout (median of traced)",
            ("traces",),
            NETWORK,
            traced_median("checkout", "internal_calls", ""),
            rank=1,
        ),
        Metric(
            "Network overhead",
            "bytes on the wire inside, per checkout (median of traced)",
            ("traces",),
            NETWORK,
            traced_median("checkout", "wire_bytes", " B"),
            rank=1,
        ),
        Metric(
            "Network overhead",
            "time between components per checkout (median of traced)",
            ("traces",),
            NETWORK,
            traced_median("checkout", "between_us", " µs"),
            rank=1,
        ),
        Metric(
            "Debugging",
            "spans recorded per checkout (median of traced)",
            ("spans", "traces"),
            NETWORK,
            trace_fill("checkout", spans_in, ""),
        ),
        Metric(
            "Debugging",
            "processes (log files) one checkout touches (median of traced)",
            ("spans", "traces"),
            NETWORK,
            trace_fill("checkout", processes_in, ""),
        ),
    ),
)

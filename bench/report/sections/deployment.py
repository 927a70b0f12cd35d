"""Independent deployment: one part restarted under steady load, bin by bin; its verdict rows compare the restart
with one replica (or worker) and the rolling restart of several."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bench.common.names import RESTART_SCENARIOS
from bench.common.stats import disturbed_above
from bench.report import charts
from bench.report.context import Context, deployment_anchor
from bench.report.format import duration_text, ms, num
from bench.report.sections.common import DEPLOYMENT, topo
from bench.report.sections.scaling import replica_noun
from bench.report.view import INVALID, Cell, Figure, Fill, Metric, Part, Row, Section, Span, Table, table, text


def restart_order(ctx: Context) -> list[pd.Series]:
    """The rows of ``deployment`` in the order of :data:`RESTART_SCENARIOS` (then any other scenario)."""
    frame = ctx.table("deployment")
    rank = {s: i for i, s in enumerate(RESTART_SCENARIOS)}
    return sorted((r for _, r in frame.iterrows()), key=lambda r: (rank.get(str(r["scenario"]), len(rank)), r.name))


def restarted_text(row: pd.Series) -> str:
    """What a scenario restarted: ``the whole app (1 worker)``, ``inventory, 2 replicas one at a time``."""
    component, count = str(row["component"]), int(row["replicas"])
    what = "the whole app" if component == "monolith" else component
    if count <= 1:
        return f"{what} (1 {replica_noun(component)})"
    return f"{what}, {count} {replica_noun(component)}s one at a time"


def steady_text(seconds: float) -> str:
    """The time to steady state, as the experiment records it (no disturbed bin: nothing to wait for)."""
    if not math.isfinite(seconds):
        return "time to steady state unknown"
    if seconds <= 0:
        return "no disturbed bin"
    return f"steady after {duration_text(seconds)}"


def restart_fill(*scenarios: str) -> Fill:
    """Per topology, its scenario among ``scenarios``: the failed requests during the restart and the time until
    latency was steady again."""

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for row in restart_order(ctx):
            if str(row["scenario"]) in scenarios:
                out[str(row["topology"])] = restart_cell(row)
        return out

    return fill


def absorbable_text(row: pd.Series) -> str:
    """ ", N a retrying client would absorb" where the run counted them and some were (else "")."""
    absorbable = row.get("errors_absorbable_by_retry")
    if absorbable is None or pd.isna(absorbable) or not int(absorbable):
        return ""
    return f", {int(absorbable):,} a retrying client would absorb"


def restart_cell(row: pd.Series) -> Cell:
    errors = int(row["errors_during"])
    rate = f" ({float(row['error_rate_during']):.2%}{absorbable_text(row)})" if errors else ""
    said = f"{errors:,} errors{rate} restarting {restarted_text(row)}; {steady_text(float(row['time_to_steady_s']))}"
    invalid = () if bool(row["valid"]) else (deployment_anchor(str(row["scenario"])),)
    return Cell(float(errors), said, invalid)


def restart_timeline(ctx: Context, row: pd.Series) -> charts.RestartTimeline:
    """One scenario's bins and events, from ``deployment_timeline`` and ``deployment_events``."""
    scenario = str(row["scenario"])
    bins, events = ctx.table("deployment_timeline"), ctx.table("deployment_events")
    bins = bins[bins["scenario"] == scenario].sort_values("t") if not bins.empty else bins
    events = events[events["scenario"] == scenario].sort_values("t") if not events.empty else events
    marks = [(float(t), str(e)) for t, e in zip(events.get("t", []), events.get("event", []), strict=True)]
    before = float(row["p99_before"])
    steady = float(row["time_to_steady_s"])
    disturbed = None
    if marks and math.isfinite(steady) and steady > 0:
        disturbed = (marks[0][0], marks[0][0] + steady)
    return charts.RestartTimeline(
        f"{scenario}: {row['description']}",
        str(row["topology"]),
        [float(t) for t in bins.get("t", [])],
        float(bins["bin"].iloc[0]) if len(bins) else 0.5,
        [float(v) for v in bins.get("p99", [])],
        [int(v) for v in bins.get("errors", [])],
        marks,
        disturbed,
        disturbed_above(before) if math.isfinite(before) else None,
        bool(row["valid"]),
        [float(v) for v in bins.get("p90", [])],
    )


def restarts_table(rows: Sequence[pd.Series]) -> Table:
    header = [
        "scenario",
        "topology",
        "rate /s",
        "requests",
        "errors during",
        "p99 before ms",
        "p99 during ms",
        "max during ms",
        "restart",
        "to steady state",
        "valid",
        "reasons",
    ]
    body = []
    for row in rows:
        valid = bool(row["valid"])
        steady = steady_text(float(row["time_to_steady_s"])).removeprefix("steady after ")
        cells = (
            (Span(str(row["scenario"]), "b"), Span(str(row["description"]), "desc")),
            topo(str(row["topology"])),
            text(num(float(row["rate"]))),
            text(f"{int(row['requests']):,}"),
            text(f"{int(row['errors_during']):,} ({float(row['error_rate_during']):.2%}{absorbable_text(row)})"),
            text(ms(float(row["p99_before"]))),
            text(ms(float(row["p99_during"]))),
            text(ms(float(row["max_during"]))),
            (Span(duration_text(float(row["restart_seconds"])), "nw"),),
            (Span(steady, "nw"),),
            text("yes") if valid else INVALID,
            (Span(str(row.get("invalid_reasons", "") or ""), "desc"),),
        )
        body.append(Row(cells, deployment_anchor(str(row["scenario"])), "" if valid else "invalid"))
    return table(header, body, left=2, text=(len(header) - 1,), css="wide")


@dataclass(frozen=True)
class Deployment:
    timeline: Figure | None
    timelines: tuple[charts.RestartTimeline, ...]
    table: Table
    command: str = DEPLOYMENT


def deployment(ctx: Context) -> Deployment:
    rows = restart_order(ctx)
    chart, timelines = None, []
    if ctx.has("deployment_timeline"):
        timelines = [restart_timeline(ctx, row) for row in rows]
        svg = charts.svg_of(charts.restart_chart(timelines), "restart", "latency and errors during each restart")
        chart = Figure(svg, "restart")
    return Deployment(chart, tuple(timelines), restarts_table(rows))


PART = Part(
    sections=(
        Section(
            "deployment",
            "Independent deployment: restarting one part under load",
            deployment,
            "deployment.html.j2",
            ("deployment",),
            DEPLOYMENT,
        ),
    ),
    metrics=(
        Metric(
            "Deployment",
            "restart with one replica / worker: failed requests, and time until latency is steady again",
            ("deployment",),
            DEPLOYMENT,
            restart_fill("monolith-1", "single"),
        ),
        Metric(
            "Deployment",
            "restart with several, one at a time (rolling): failed requests, and time until steady",
            ("deployment",),
            DEPLOYMENT,
            restart_fill("monolith-n", "rolling"),
        ),
    ),
)

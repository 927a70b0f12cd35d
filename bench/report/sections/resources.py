"""CPU per request and memory, by process (from the network experiment's ``resources``); its verdict rows are the
CPU per request, the processes and databases there are to run, and the peak memory."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common.names import PLACEMENT
from bench.report import charts
from bench.report.context import Context
from bench.report.format import MIB, num
from bench.report.sections.common import NETWORK, estimate_cells, topo, valid_or
from bench.report.view import Cell, Figure, Metric, Part, Row, Section, Table, flag, table, text


def cpu_low(ctx: Context) -> dict[str, Cell]:
    """CPU per successful request at low load: the median over rounds with its interval where the run estimated it,
    else the one low-load run's figure."""
    estimated = estimate_cells(ctx, "cpu_per_request_us", num, "µs")
    if estimated is not None:
        return estimated
    out = {}
    for topology in ctx.topologies:
        row = ctx.step(topology, "low")
        if row is not None:
            value = float(row["cpu_per_request_us"])
            out[topology] = Cell(value, f"{num(value)} µs", ctx.invalid(topology, "low"))
    return out


def cpu_common(ctx: Context) -> dict[str, Cell]:
    rate = ctx.common_rate()
    out: dict[str, Cell] = {}
    if rate is None:
        return out
    for topology in ctx.topologies:
        row = ctx.sweep_step(topology, rate)
        if row is not None:
            value = float(row["cpu_per_request_us"])
            invalid = ctx.invalid(topology, "sweep", int(row["step"]))
            out[topology] = Cell(value, f"{num(value)} µs at {rate:g}/s", invalid)
    return out


def process_count(ctx: Context) -> dict[str, Cell]:
    out = {}
    for topology in ctx.topologies:
        names = ctx.processes(topology)
        if names:
            out[topology] = Cell(float(len(names)), f"{len(names)}")
    return out


def database_count(ctx: Context) -> dict[str, Cell]:
    out = {}
    for topology in ctx.topologies:
        count = ctx.databases(topology)
        if count is not None:
            out[topology] = Cell(float(count), f"{count}")
    return out


def peak_memory(ctx: Context) -> dict[str, Cell]:
    """The highest total peak RSS of any step (all processes of the topology)."""
    out = {}
    for topology in ctx.topologies:
        step = ctx.memory_step(topology)
        if step is not None:
            value = float(step["peak_rss_bytes"]) / MIB
            invalid = ctx.invalid(topology, str(step["phase"]), int(step["step"]))
            out[topology] = Cell(value, f"{num(value)} MiB", invalid)
    return out


def cpu_bars(ctx: Context, phase: str, rate: float | None = None) -> list[charts.StackedBar]:
    """CPU per request of one run per topology (``phase``, at ``rate`` if given), stacked by process.

    Segments are the processes' rows of ``resources``; the total shown is the run's own figure from ``steps``.
    """
    resources, bars = ctx.table("resources"), []
    for topology in ctx.topologies:
        rows = resources[(resources["topology"] == topology) & (resources["phase"] == phase)]
        if rate is not None:
            rows = rows[rows["target_rate"] == rate]
        if rows.empty:
            continue
        step = int(rows["step"].iloc[0])
        rows = rows[rows["step"] == step]
        segments = [(str(r["process"]), float(r["cpu_per_request_us"])) for _, r in rows.iterrows()]
        run = ctx.step(topology, phase, step)
        total = float(run["cpu_per_request_us"]) if run is not None else None
        bars.append(charts.StackedBar(topology, segments, not ctx.invalid(topology, phase, step), total))
    return bars


@dataclass(frozen=True)
class Resources:
    cpu: Figure
    memory: Figure
    table: Table


def resources(ctx: Context) -> Resources:
    low_rate = ctx.network.low_rate
    common = ctx.common_rate()
    low = num(float(low_rate)) if isinstance(low_rate, int | float) else num(None)
    cpu_panels = [(f"low load ({low} req/s)", cpu_bars(ctx, "low"))]
    if common is not None:
        cpu_panels.append((f"sweep at {common:,.0f} req/s", cpu_bars(ctx, "sweep", common)))
    cpu_svg = charts.svg_of(
        charts.stacked_chart(cpu_panels, "CPU µs per successful request"), "cpu", "CPU per request by process"
    )
    memory_bars, rows = [], []
    table_ = ctx.table("resources")
    for topology in ctx.topologies:
        step = ctx.memory_step(topology)
        if step is None:
            continue
        phase, index = str(step["phase"]), int(step["step"])
        mine = table_[(table_["topology"] == topology) & (table_["phase"] == phase) & (table_["step"] == index)]
        segments = [(str(r["process"]), float(r["peak_rss_bytes"]) / MIB) for _, r in mine.iterrows()]
        invalid = ctx.invalid(topology, phase, index)
        memory_bars.append(
            charts.StackedBar(topology, segments, not invalid, total=float(step["peak_rss_bytes"]) / MIB)
        )
        for _, r in mine.iterrows():
            at_low = table_[
                (table_["topology"] == topology) & (table_["phase"] == "low") & (table_["process"] == r["process"])
            ]
            cells = (
                topo(topology),
                text(r["process"]),
                text(num(float(at_low["cpu_seconds"].iloc[0])) if len(at_low) else "—"),
                text(num(float(at_low["cpu_per_request_us"].iloc[0])) if len(at_low) else "—"),
                text(num(float(r["peak_rss_bytes"]) / MIB)),
                text(f"{phase} {index} ({float(step['target_rate']):g} req/s)"),
                valid_or(flag(invalid)),
            )
            rows.append(Row(cells, css="invalid" if invalid else ""))
    memory_svg = charts.svg_of(
        charts.stacked_chart([("peak RSS, the step with the highest total", memory_bars)], "MiB", " MiB"),
        "memory",
        "peak memory by process",
    )
    header = ["topology", "process", "CPU s at low load", "CPU µs/request at low load", "peak RSS MiB", "peak in step"]
    return Resources(Figure(cpu_svg, "cpu"), Figure(memory_svg, "memory"), table([*header, "valid"], rows, left=2))


PART = Part(
    sections=(
        Section(
            "resources",
            "CPU per request and memory, by process",
            resources,
            "resources.html.j2",
            ("steps", "resources"),
        ),
    ),
    metrics=(
        Metric("Complexity", "processes to run", ("resources",), NETWORK, process_count),
        Metric("Complexity", "databases", (PLACEMENT,), NETWORK, database_count),
        Metric("Complexity", "memory: peak RSS of all processes (highest step)", ("steps",), NETWORK, peak_memory),
        Metric(
            "Network overhead",
            "CPU per successful request, all processes, at low load",
            ("steps",),
            NETWORK,
            cpu_low,
            headline=True,
            rank=2,
        ),
        Metric(
            "Network overhead",
            "CPU per successful request at the highest rate every topology ran",
            ("steps",),
            NETWORK,
            cpu_common,
            rank=2,
        ),
    ),
)

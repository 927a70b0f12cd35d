"""CPU per request and memory, by process (from the network experiment's ``resources``); its verdict rows are the
CPU per request, the processes and databases there are to run, and the peak memory.

In a run measured in rounds every figure here comes from the low-load rounds (:mod:`bench.report.rounds`): CPU per
request is the median over the rounds with its interval (the verdict's), per process too; memory is the largest peak
RSS over the low-load rounds, flagged only when the round it was taken in is an invalid run. CPU per request at the
highest rate every topology ran is one probe of the knee search (no rounds), and says so. An older run shows its one
low-load run, and memory at the step with the highest total.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from bench.common.names import PLACEMENT
from bench.report import charts, rounds
from bench.report.context import Context
from bench.report.format import MIB, num
from bench.report.rounds import Over
from bench.report.sections.common import NETWORK, estimate_cells, over_content, topo, valid_or
from bench.report.view import Cell, Figure, Metric, Part, Row, Section, Table, flag, table, text

LOW_LOAD: Final = "low-load rounds"
ONE_PROBE: Final = "one probe of the knee search, no rounds"


def cpu_low(ctx: Context) -> dict[str, Cell]:
    """CPU per successful request at low load (µs): the median over rounds with its interval where the run measured
    rounds, else the one low-load run's figure."""
    estimated = estimate_cells(ctx, "cpu_per_request_us", rounds.low_column(ctx, "cpu_per_request_us"), num, "µs")
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
    """CPU per successful request (µs) at the highest rate every topology's sweep or knee search ran: one run each.
    Knee searches that start at each topology's own rate may share none: each topology's cell says so."""
    rate = ctx.common_rate()
    out: dict[str, Cell] = {}
    if rate is None:
        if rounds.measured_in_rounds(ctx):
            searched = [t for t in ctx.topologies if len(ctx.sweep(t))]
            out = {t: Cell(None, "no rate that every topology's search ran") for t in searched}
        return out
    basis = ONE_PROBE if rounds.measured_in_rounds(ctx) else ""
    for topology in ctx.topologies:
        row = ctx.sweep_step(topology, rate)
        if row is not None:
            value = float(row["cpu_per_request_us"])
            invalid = ctx.invalid(topology, "sweep", int(row["step"]))
            out[topology] = Cell(value, f"{num(value)} µs at {rate:g}/s", invalid, basis=basis)
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


def memory_over_rounds(ctx: Context) -> dict[str, Over]:
    """Per topology, the largest total peak RSS (bytes, all processes) over the low-load rounds."""
    return rounds.largest(rounds.low_column(ctx, "peak_rss_bytes"), ctx.topologies, LOW_LOAD)


def peak_memory(ctx: Context) -> dict[str, Cell]:
    """The peak RSS of all the processes of a topology (MiB): the largest over the low-load rounds, flagged when the
    round it was taken in is an invalid run; in an older run, the step with the highest total."""
    out = {}
    if rounds.measured_in_rounds(ctx):
        for topology, value in memory_over_rounds(ctx).items():
            if value.n:
                mib = value.value / MIB
                out[topology] = Cell(mib, f"{num(mib)} MiB", value.invalid, basis=value.basis)
        return out
    for topology in ctx.topologies:
        step = ctx.memory_step(topology)
        if step is not None:
            mib = float(step["peak_rss_bytes"]) / MIB
            invalid = ctx.invalid(topology, str(step["phase"]), int(step["step"]))
            out[topology] = Cell(mib, f"{num(mib)} MiB", invalid, basis="the step with the highest total")
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
class PerProcess:
    """Per (topology, process), over the low-load rounds: CPU per request (µs) and CPU seconds, medians with their
    intervals, and peak RSS (bytes), the largest."""

    cpu: dict[tuple[str, str], Over]
    seconds: dict[tuple[str, str], Over]
    memory: dict[tuple[str, str], Over]


def per_process(ctx: Context) -> PerProcess:
    return PerProcess(
        rounds.per_process(rounds.process_rounds(ctx, "cpu_per_request_us")),
        rounds.per_process(rounds.process_rounds(ctx, "cpu_seconds")),
        rounds.per_process(rounds.process_rounds(ctx, "peak_rss_bytes"), "largest", LOW_LOAD),
    )


@dataclass(frozen=True)
class Resources:
    """The CPU and memory charts and the table by process. In a run measured in rounds, ``rounds`` low-load rounds,
    ``cpu_basis`` and ``memory_basis`` say what the totals are, and ``common`` the rate of the one-probe panel
    ("" without one); 0 and "" for an older run."""

    cpu: Figure
    memory: Figure
    table: Table
    rounds: int = 0
    cpu_basis: str = ""
    memory_basis: str = ""
    common: str = ""


def resources(ctx: Context) -> Resources:
    if rounds.measured_in_rounds(ctx):
        return resources_over_rounds(ctx)
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


def resources_over_rounds(ctx: Context) -> Resources:
    """The charts and the table from the low-load rounds: each process's median CPU per request (the bar's total is
    the median of the totals, the verdict's figure, which need not be the sum of the processes' medians) and its
    largest peak RSS (the bar's total is the largest total, the verdict's)."""
    count, processes = rounds.low_rounds(ctx), per_process(ctx)
    cpu = rounds.figure_over(ctx, "cpu_per_request_us", rounds.low_column(ctx, "cpu_per_request_us"))
    memory = memory_over_rounds(ctx)
    seconds = rounds.over(rounds.low_column(ctx, "cpu_seconds"), ctx.topologies)
    low_rate = ctx.network.low_rate
    low = num(float(low_rate)) if isinstance(low_rate, int | float) else num(None)
    cpu_bars_, memory_bars, rows = [], [], []
    for topology in ctx.topologies:
        names = [p for t, p in processes.cpu if t == topology]
        if not names:
            continue
        mine = {name: (processes.cpu[(topology, name)], processes.memory.get((topology, name))) for name in names}
        total, peak = cpu.get(topology), mib_of(memory.get(topology))
        segments = [(name, c.value) for name, (c, _) in mine.items() if c.n]
        shown = total.value if total is not None and total.n else None
        cpu_bars_.append(charts.StackedBar(topology, segments, total is None or not total.invalid, shown))
        heights = [(name, m.value / MIB) for name, (_, m) in mine.items() if m is not None and m.n]
        mib = peak.value if peak is not None and peak.n else None
        memory_bars.append(charts.StackedBar(topology, heights, peak is None or not peak.invalid, mib))
        for name, (c, m) in mine.items():
            invalid = [*c.invalid, *(m.invalid if m is not None else ())]
            cells = (
                topo(topology),
                text(name),
                over_content(processes.seconds.get((topology, name)), num),
                over_content(c, num),
                over_content(mib_of(m), num),
                valid_or(flag(invalid)),
            )
            rows.append(Row(cells, css="invalid" if invalid else ""))
        if len(mine) > 1:  # the totals: the verdict's figures
            invalid = [*(total.invalid if total else ()), *(peak.invalid if peak else ())]
            cells = (
                topo(topology),
                text("all processes"),
                over_content(seconds.get(topology), num),
                over_content(total, num),
                over_content(peak, num),
                valid_or(flag(invalid)),
            )
            rows.append(Row(cells, css="sum invalid" if invalid else "sum"))
    cpu_basis = rounds.summarized(cpu)
    memory_basis = rounds.summarized(memory_over_rounds(ctx))
    common = ctx.common_rate()
    panels = [(f"low load ({low} req/s), median of {count} rounds", cpu_bars_)]
    if common is not None:
        panels.append((f"{common:,.0f} req/s: one probe of the knee search", cpu_bars(ctx, "sweep", common)))
    cpu_svg = charts.svg_of(
        charts.stacked_chart(panels, "CPU µs per successful request"), "cpu", "CPU per request by process"
    )
    memory_svg = charts.svg_of(
        charts.stacked_chart([(f"peak RSS, largest of {count} low-load rounds", memory_bars)], "MiB", " MiB"),
        "memory",
        "peak memory by process",
    )
    header = [
        "topology",
        "process",
        "CPU s a round at low load, median",
        "CPU µs/request at low load, median",
        "peak RSS MiB at low load, largest",
        "valid",
    ]
    return Resources(
        Figure(cpu_svg, "cpu"),
        Figure(memory_svg, "memory"),
        table(header, rows, left=2),
        count,
        cpu_basis,
        memory_basis,
        f"{common:,.0f}" if common is not None else "",
    )


def mib_of(value: Over | None) -> Over | None:
    """A figure in bytes, in MiB."""
    if value is None:
        return None
    return replace(value, value=value.value / MIB, low=value.low / MIB, high=value.high / MIB)


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
        Metric("Complexity", "memory: peak RSS of all processes", ("steps",), NETWORK, peak_memory),
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

"""The decomposition monolith -> colocated -> microservices: how much of the cost of microservices comes from
splitting the data and serializing calls, and how much from processes and the network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.report import charts, rounds
from bench.report.context import Context
from bench.report.format import num, signed
from bench.report.sections.common import topo, valid_or
from bench.report.sections.network import low_op_latency
from bench.report.sections.resources import cpu_common, cpu_low
from bench.report.sections.traces import traced_median
from bench.report.view import Cell, Content, Figure, Part, Row, Section, Table, flag, table, text

NEEDED: Final = ("monolith", "colocated", "microservices")


@dataclass(frozen=True)
class Decomposed:
    """One figure of the decomposition: its cells per topology, and the factor from cell values to ``unit``."""

    name: str
    unit: str
    cells: dict[str, Cell]
    scale: float = 1.0
    chart: bool = True


@dataclass(frozen=True)
class Decomposition:
    """``complete`` is False when the run lacks one of the three topologies (then there is nothing else).
    ``rounds``: the low-load rounds the figures at low load are medians over (0: an older run's one run)."""

    complete: bool
    chart: Figure | None = None
    table: Table | None = None
    rounds: int = 0


def decomposition(ctx: Context) -> Decomposition:
    if not set(NEEDED) <= set(ctx.topologies):
        return Decomposition(False)
    common = ctx.common_rate()
    figures = [
        Decomposed("checkout p50 at low load", "ms", low_op_latency("checkout", "p50")(ctx), scale=1e3),
        Decomposed("CPU per request at low load", "µs", cpu_low(ctx)),
    ]
    if common is not None:
        figures.append(Decomposed(f"CPU per request at {common:,.0f} req/s", "µs", cpu_common(ctx)))
    between = traced_median("checkout", "between_us", "")(ctx)
    figures.append(Decomposed("checkout: time between components (traced median)", "µs", between, chart=False))
    bridges, rows = [], []
    for fig in figures:
        if not all(t in fig.cells and fig.cells[t].value is not None for t in NEEDED):
            continue
        mono, colo, micro = (float(fig.cells[t].value or 0.0) * fig.scale for t in NEEDED)
        valid3 = tuple(not fig.cells[t].invalid for t in NEEDED)
        if fig.chart:
            bridges.append(charts.Bridge(fig.name, fig.unit, mono, colo, micro, (valid3[0], valid3[1], valid3[2])))
        growth = micro - mono
        share = f"{(colo - mono) / growth:.0%}" if growth > 0 else "—"
        invalid = [a for t in NEEDED for a in fig.cells[t].invalid]
        cells = (
            text(f"{fig.name} ({fig.unit})"),
            text(num(mono)),
            text(num(colo)),
            text(num(micro)),
            text(signed(colo - mono)),
            text(signed(micro - colo)),
            text(share),
            valid_or(flag(invalid)),
        )
        rows.append(Row(cells, css="invalid" if invalid else ""))
    header: list[Content | str] = [
        "figure",
        *(topo(t) for t in NEEDED),
        "split data, serialize",
        "processes, network",
        "share of the increase from splitting",
        "valid",
    ]
    chart = None
    if bridges:
        svg = charts.svg_of(charts.bridge_chart(bridges), "bridge", "decomposition of the cost of microservices")
        chart = Figure(svg, "bridge")
    count = rounds.low_rounds(ctx) if rounds.measured_in_rounds(ctx) else 0
    return Decomposition(True, chart, table(header, rows), count)


PART = Part(
    sections=(
        Section(
            "decomposition",
            "Decomposition: monolith → colocated → microservices",
            decomposition,
            "decomposition.html.j2",
            ("steps", "ops"),
        ),
    ),
)

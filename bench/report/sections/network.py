"""The network experiment's latency: the percentile spectrum at low load and latency against offered load; its
verdict rows are the sustainable throughput and the low-load latencies."""

from __future__ import annotations

from dataclasses import dataclass

from bench.report import charts
from bench.report.context import Context
from bench.report.format import ms, num
from bench.report.sections.common import NETWORK, estimate_cells, topo, valid_or
from bench.report.view import Cell, Figure, Fill, Metric, Part, Row, Section, Table, flag, table, text


def low_op_latency(op: str, column: str) -> Fill:
    """``column`` (p50, p99...) of ``op`` in the low-load phase: the median over rounds with its interval where the
    run estimated it (``estimates``), else the one low-load run's figure from the ``ops`` table."""

    def fill(ctx: Context) -> dict[str, Cell]:
        estimated = estimate_cells(ctx, f"{op}_{column}_ms", lambda v: ms(v / 1e3), "ms")
        if estimated is not None:
            return estimated
        ops = ctx.table("ops")
        rows = ops[(ops["phase"] == "low") & (ops["op"] == op)]
        out = {}
        for topology in ctx.topologies:
            row = rows[rows["topology"] == topology]
            if len(row):
                seconds = float(row[column].iloc[0])
                out[topology] = Cell(seconds, f"{ms(seconds)} ms", ctx.invalid(topology, "low"))
        return out

    return fill


def sustainable(ctx: Context) -> dict[str, Cell]:
    """The sustainable throughput: the median over the knee's rounds with its interval where the run estimated it,
    else the highest sweep rate that met the SLO (an older run)."""
    estimated = estimate_cells(ctx, "sustainable_rps", lambda v: f"{v:,.0f}", "req/s")
    if estimated is not None:
        return estimated
    rates = ctx.meta.sustainable_throughput
    out = {}
    for topology in ctx.topologies:
        if topology not in rates:
            continue
        rate = rates[topology]
        if rate is None:
            out[topology] = Cell(None, "no valid rate met the SLO")
        else:
            prefix = "≥ " if ctx.at_least(topology, float(rate)) else ""
            out[topology] = Cell(float(rate), f"{prefix}{float(rate):,.0f} req/s")
    return out


@dataclass(frozen=True)
class Spectrum:
    chart: Figure
    table: Table
    rate: str
    arrival: str


def spectrum(ctx: Context) -> Spectrum:
    panels: dict[str, list[charts.Spectrum]] = {"all operations": [], "checkout": []}
    rows = []
    ops = ctx.table("ops")
    for topology in ctx.topologies:
        low = ctx.step(topology, "low")
        if low is None:
            continue
        valid = bool(low["valid"])
        checkout = ops[(ops["topology"] == topology) & (ops["phase"] == "low") & (ops["op"] == "checkout")]
        sources = [("all operations", low, int(low["requests"]))]
        if len(checkout):
            sources.append(("checkout", checkout.iloc[0], int(checkout["count"].iloc[0])))
        for title, row, count in sources:
            latencies = {name: float(row[name]) for name, _ in charts.SPECTRUM}
            panels[title].append(charts.Spectrum(topology, latencies, count, valid))
            cells = [
                topo(topology),
                text(title),
                text(f"{count:,}"),
                *(text(ms(float(row[name]))) for name, _ in charts.SPECTRUM),
                text(ms(float(row["max"]))),
                valid_or(() if valid else flag(ctx.invalid(topology, "low"))),
            ]
            rows.append(Row(tuple(cells), css="" if valid else "invalid"))
    svg = charts.svg_of(
        charts.spectrum_chart(list(panels.items())), "spectrum", "latency percentile spectrum per topology"
    )
    header = ["topology", "operations", "requests", *(f"{n} ms" for n, _ in charts.SPECTRUM), "max ms", "valid"]
    rate = ctx.network.low_rate
    arrival = ctx.network.arrival
    return Spectrum(
        Figure(svg, "spectrum"),
        table(header, rows, left=2),
        num(float(rate) if isinstance(rate, float | int) else None),
        arrival if isinstance(arrival, str) else "?",
    )


@dataclass(frozen=True)
class Sustained:
    """One topology's sustainable throughput, as said under the load chart."""

    topology: str
    text: str
    invalid_steps: int
    steps: int


@dataclass(frozen=True)
class Load:
    chart: Figure
    sustained: tuple[Sustained, ...]
    slo: str
    budget: str


def load(ctx: Context) -> Load:
    curves = []
    for topology in ctx.topologies:
        sweep = ctx.sweep(topology)
        points = [
            charts.LoadPoint(float(r["offered_rate"]), float(r["p50"]), float(r["p99"]), bool(r["valid"]))
            for _, r in sweep.iterrows()
        ]
        recorded = ctx.meta.sustainable_throughput.get(topology)
        rate = None if recorded is None else float(recorded)
        curves.append(charts.LoadCurve(topology, points, rate, rate is not None and ctx.at_least(topology, rate)))
    slo, budget = ctx.network.slo_p99, ctx.network.error_budget
    slo_value = float(slo) if isinstance(slo, int | float) else None
    svg = charts.svg_of(charts.load_chart(curves, slo_value), "load", "latency against offered load")
    sustained = []
    for curve in curves:
        if curve.sustainable is None:
            said = "no valid sweep step met the SLO"
        else:
            said = f"{'≥ ' if curve.at_least else ''}{curve.sustainable:,.0f} req/s"
            if curve.at_least:
                said += " (the highest rate tried: it may sustain more)"
        invalid = sum(not p.valid for p in curve.points)
        sustained.append(Sustained(curve.topology, said, invalid, len(curve.points)))
    return Load(
        Figure(svg, "load"),
        tuple(sustained),
        f"p99 ≤ {num(slo_value * 1e3)} ms" if slo_value is not None else "p99 within the SLO",
        f" and an error rate under {budget:.2%}" if isinstance(budget, int | float) else "",
    )


PART = Part(
    sections=(
        Section("spectrum", "Latency percentile spectrum at low load", spectrum, "spectrum.html.j2", ("steps", "ops")),
        Section("load", "Latency against offered load", load, "load.html.j2", ("steps",)),
    ),
    metrics=(
        Metric(
            "Scaling",
            "sustainable throughput on the same CPUs (p99 within the SLO, errors under budget)",
            ("steps",),
            NETWORK,
            sustainable,
            headline=True,
        ),
        Metric(
            "Network overhead",
            "checkout p50 at low load",
            ("ops",),
            NETWORK,
            low_op_latency("checkout", "p50"),
            headline=True,
        ),
        Metric("Network overhead", "checkout p99 at low load", ("ops",), NETWORK, low_op_latency("checkout", "p99")),
        Metric("Network overhead", "browse p50 at low load", ("ops",), NETWORK, low_op_latency("browse", "p50")),
        Metric("Network overhead", "browse p99 at low load", ("ops",), NETWORK, low_op_latency("browse", "p99")),
    ),
)

"""The network experiment's latency: the percentile spectrum at low load and latency against offered load; its
verdict rows are the sustainable throughput and the low-load latencies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from bench.common.intervals import smallest_resolving_sample
from bench.report import charts, rounds
from bench.report.context import Context
from bench.report.format import ms, num
from bench.report.sections.common import NETWORK, estimate_cells, over_content, topo, valid_or
from bench.report.view import Cell, Figure, Fill, Metric, Part, Row, Section, Table, flag, table, text

NO_ROUND: Final = "no round could carry it"
NO_RATE: Final = "no round found a rate within the SLO"


def low_op_latency(op: str, column: str) -> Fill:
    """``column`` (p50, p99...) of ``op`` in the low-load phase: the median over rounds with its interval (a p99 only
    from rounds whose sample resolves it), else, in an older run, the one low-load run's figure from ``ops``."""

    def fill(ctx: Context) -> dict[str, Cell]:
        resolve = column != "p50"
        frame = rounds.low_latency(ctx, column, op, resolve=resolve)
        needs = smallest_resolving_sample(rounds.RANKS[column]) if column in rounds.RANKS else 0
        missing = f"not resolved: {column} needs {needs:,} requests a round"
        estimated = estimate_cells(ctx, f"{op}_{column}_ms", frame, ms, "ms", missing if resolve else NO_ROUND)
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
    estimated = estimate_cells(ctx, "sustainable_rps", rounds.knee_rounds(ctx), rate_text, "req/s", NO_RATE)
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


def rate_text(rate: float) -> str:
    """A rate in requests per second, in whole requests."""
    return f"{rate:,.0f}" if math.isfinite(rate) else "—"


@dataclass(frozen=True)
class Spectrum:
    """The spectrum chart and its table; ``basis``: what each figure is ("median of 3 rounds, 75% interval"; empty
    for an older run's one low-load run), over ``rounds`` low-load rounds (0: an older run)."""

    chart: Figure
    table: Table
    rate: str
    arrival: str
    basis: str = ""
    rounds: int = 0


#: The latencies of the spectrum, by name: its percentiles, then the maximum.
LATENCIES: Final = (*(name for name, _ in charts.SPECTRUM), "max")
#: The spectrum's panels: (title, operation; None for all of them).
PANELS: Final = (("all operations", None), ("checkout", "checkout"))


def spectrum(ctx: Context) -> Spectrum:
    """The latency percentiles at low load per topology, of all operations and of checkouts: the medians over the
    low-load rounds with their intervals, or an older run's one low-load run."""
    rate, arrival = ctx.network.low_rate, ctx.network.arrival
    header = ["topology", "operations", "requests", *(f"{n} ms" for n, _ in charts.SPECTRUM), "max ms", "valid"]
    if rounds.measured_in_rounds(ctx):
        panels, rows, basis = spectrum_over_rounds(ctx)
        header[2:3] = ["rounds", "requests a round"]
    else:
        panels, rows, basis = single_spectrum(ctx)
    svg = charts.svg_of(charts.spectrum_chart(panels), "spectrum", "latency percentile spectrum per topology")
    return Spectrum(
        Figure(svg, "spectrum"),
        table(header, rows, left=2),
        num(float(rate) if isinstance(rate, float | int) else None),
        arrival if isinstance(arrival, str) else "?",
        basis,
        rounds.low_rounds(ctx) if rounds.measured_in_rounds(ctx) else 0,
    )


SpectrumParts = tuple[list[tuple[str, list[charts.Spectrum]]], list[Row], str]


def single_spectrum(ctx: Context) -> SpectrumParts:
    """The spectrum of an older run: its one low-load run per topology."""
    panels: dict[str, list[charts.Spectrum]] = {title: [] for title, _ in PANELS}
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
                *(text(ms(float(row[name]))) for name in LATENCIES),
                valid_or(() if valid else flag(ctx.invalid(topology, "low"))),
            ]
            rows.append(Row(tuple(cells), css="" if valid else "invalid"))
    return list(panels.items()), rows, ""


def spectrum_over_rounds(ctx: Context) -> SpectrumParts:
    """Each latency of the spectrum per topology as the median over the low-load rounds that can carry it (those
    where the generator's lag did not void it), the p50s exactly the verdict's; a percentile beyond what a round's
    requests resolve (fewer than 1/(1-p)) is shown grey, as the chart draws it hollow."""
    panels: dict[str, list[charts.Spectrum]] = {title: [] for title, _ in PANELS}
    rows: dict[str, list[Row]] = {topology: [] for topology in ctx.topologies}
    bases: list[str] = []
    for title, op in PANELS:
        counts = rounds.over(
            rounds.low_column(ctx, "requests") if op is None else rounds.op_column(ctx, op, "count"), ctx.topologies
        )
        figures = {}
        for name in LATENCIES:
            frame = rounds.low_latency(ctx, name, op)
            figure = f"{op}_{name}_ms" if op is not None else f"{name}_ms"
            # The p50s as the experiment estimated them (the verdict's); the others by the same rules, unresolved
            # percentiles included (drawn as what they are).
            figures[name] = (
                rounds.figure_over(ctx, figure, frame) if name == "p50" else rounds.over(frame, ctx.topologies)
            )
        for topology in ctx.topologies:
            count = counts.get(topology)
            if count is None or not count.n:
                continue
            mine = {name: figures[name].get(topology) for name in LATENCIES}
            invalid = [a for o in mine.values() if o is not None for a in o.invalid]
            bases += [o.basis for o in mine.values() if o is not None and o.basis]
            latencies = {name: o.value for name, o in mine.items() if o is not None and o.n and name != "max"}
            panels[title].append(charts.Spectrum(topology, latencies, int(count.value), not invalid))
            resolved = {name: count.value * (1.0 - q / 100.0) >= 1.0 for name, q in charts.SPECTRUM}
            cells = [
                topo(topology),
                text(title),
                text(count.n),
                text(f"{count.value:,.0f}"),
                *(over_content(mine[name], ms, dim=not resolved.get(name, True)) for name in LATENCIES),
                valid_or(flag(invalid)),
            ]
            rows[topology].append(Row(tuple(cells), css="invalid" if invalid else ""))
    basis = rounds.common_basis(bases)
    return list(panels.items()), [row for topology in ctx.topologies for row in rows[topology]], basis


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

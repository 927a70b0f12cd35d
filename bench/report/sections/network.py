"""The network experiment's latency: the percentile spectrum at low load and latency against offered load; its
verdict rows are the sustainable throughput and the low-load latencies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import pandas as pd

from bench.common.intervals import resolves, smallest_resolving_sample
from bench.common.names import KNEE
from bench.report import charts, rounds
from bench.report.context import Context, anchor
from bench.report.format import ms, num
from bench.report.sections.common import NETWORK, estimate_cells, over_content, topo, valid_or
from bench.report.view import (
    Cell,
    Content,
    Figure,
    Fill,
    Link,
    Metric,
    Part,
    Row,
    Section,
    Span,
    Table,
    flag,
    table,
    text,
)

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
    """The sustainable throughput with its interval where the run estimated it (the line fitted to the probes near
    the knee, or the median over the knee's rounds), else the highest sweep rate that met the SLO (an older run)."""
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
    """The spectrum chart and its table, over ``rounds`` low-load rounds (0: an older run's one low-load run)."""

    chart: Figure
    table: Table
    rate: str
    arrival: str
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
        panels, rows = spectrum_over_rounds(ctx)
        header[2:3] = ["rounds", "requests a round"]
    else:
        panels, rows = single_spectrum(ctx)
    svg = charts.svg_of(charts.spectrum_chart(panels), "spectrum", "latency percentile spectrum per topology")
    return Spectrum(
        Figure(svg, "spectrum"),
        table(header, rows, left=2),
        num(float(rate) if isinstance(rate, float | int) else None),
        arrival if isinstance(arrival, str) else "?",
        rounds.low_rounds(ctx) if rounds.measured_in_rounds(ctx) else 0,
    )


SpectrumParts = tuple[list[tuple[str, list[charts.Spectrum]]], list[Row]]


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
    return list(panels.items()), rows


def spectrum_over_rounds(ctx: Context) -> SpectrumParts:
    """Each latency of the spectrum per topology as the median over the low-load rounds that can carry it (those
    where the generator's lag did not void it), the p50s exactly the verdict's; a percentile beyond what a round's
    requests do not resolve (order statistics, as in the verdict) is shown grey, as the chart draws it hollow."""
    panels: dict[str, list[charts.Spectrum]] = {title: [] for title, _ in PANELS}
    rows: dict[str, list[Row]] = {topology: [] for topology in ctx.topologies}
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
            latencies = {name: o.value for name, o in mine.items() if o is not None and o.n and name != "max"}
            panels[title].append(charts.Spectrum(topology, latencies, int(count.value), not invalid))
            # The verdict's and the terminal's rule (order statistics: e.g. 368 requests for p99); grey otherwise.
            resolved = {name: resolves(int(count.value), q) for name, q in charts.SPECTRUM}
            cells = [
                topo(topology),
                text(title),
                text(count.n),
                text(f"{count.value:,.0f}"),
                *(over_content(mine[name], ms, dim=not resolved.get(name, True)) for name in LATENCIES),
                valid_or(flag(invalid)),
            ]
            rows[topology].append(Row(tuple(cells), css="invalid" if invalid else ""))
    return list(panels.items()), [row for topology in ctx.topologies for row in rows[topology]]


@dataclass(frozen=True)
class Sustained:
    """One topology's sustainable throughput, as said under the load chart: ``text`` (as in the verdict), ``basis``
    (what it is), ``bounds`` (how many rounds gave only a bound), and how many of its probes are invalid runs."""

    topology: str
    text: str
    invalid_steps: int
    steps: int
    basis: str = ""
    bounds: str = ""


@dataclass(frozen=True)
class Load:
    """The load chart and the sustainable throughput under it; ``knee``: the knee's table, round by round (None for
    an older run, whose sweep stepped through fixed rates); ``fitted``: the figure is the line fitted to the probes
    near the knee (else the median over the rounds)."""

    chart: Figure
    sustained: tuple[Sustained, ...]
    slo: str
    budget: str
    knee: Table | None = None
    rounds: int = 0
    fitted: bool = False


def load_point(row: pd.Series) -> charts.LoadPoint:
    return charts.LoadPoint(float(row["offered_rate"]), float(row["p50"]), float(row["p99"]), bool(row["valid"]))


def load(ctx: Context) -> Load:
    """Latency against offered load per topology, and the sustainable throughput: in a run measured in rounds, the
    verdict's figure with its interval (fitted to the probes near the knee) and the knee's table, round by round."""
    slo, budget = ctx.network.slo_p99, ctx.network.error_budget
    slo_value = float(slo) if isinstance(slo, int | float) else None
    knee_runs = rounds.knee_rounds(ctx)
    in_rounds = len(knee_runs) > 0
    overs = rounds.figure_over(ctx, "sustainable_rps", knee_runs) if in_rounds else {}
    cells = sustainable(ctx) if in_rounds else {}
    steps = ctx.table("steps")
    curves, sustained = [], []
    for topology in ctx.topologies:
        points = [load_point(r) for _, r in ctx.sweep(topology).iterrows()]
        if not in_rounds:
            recorded = ctx.meta.sustainable_throughput.get(topology)
            rate = None if recorded is None else float(recorded)
            at_least = rate is not None and ctx.at_least(topology, rate)
            curves.append(charts.LoadCurve(topology, points, rate, at_least))
            if rate is None:
                said = "no valid sweep step met the SLO"
            else:
                said = f"{'≥ ' if at_least else ''}{rate:,.0f} req/s"
                if at_least:
                    said += " (the highest rate tried: it may sustain more)"
            sustained.append(Sustained(topology, said, sum(not p.valid for p in points), len(points)))
            continue
        rechecks = steps[(steps["topology"] == topology) & (steps["phase"] == "knee")]
        again = [load_point(r) for _, r in rechecks.sort_values("target_rate").iterrows()]
        value = overs.get(topology)
        rate = value.value if value is not None and value.n else None
        interval = (value.low, value.high) if value is not None and value.n > 1 else None
        curves.append(charts.LoadCurve(topology, points, rate, rechecks=again, interval=interval))
        cell = cells.get(topology)
        probes = [*points, *again]
        sustained.append(
            Sustained(
                topology,
                cell.text if cell is not None else NO_RATE,
                sum(not p.valid for p in probes),
                len(probes),
                cell.basis if cell is not None else "",
                bounds_text(ctx.table(KNEE), topology),
            )
        )
    svg = charts.svg_of(charts.load_chart(curves, slo_value), "load", "latency against offered load")
    return Load(
        Figure(svg, "load"),
        tuple(sustained),
        f"p99 ≤ {num(slo_value * 1e3)} ms" if slo_value is not None else "p99 within the SLO",
        f" and an error rate under {budget:.2%}" if isinstance(budget, int | float) else "",
        knee_table(ctx, overs) if in_rounds else None,
        int(knee_runs.groupby("topology")["round"].nunique().max()) if in_rounds else 0,
        any(o.fitted for o in overs.values()),
    )


def bounds_text(knee: pd.DataFrame, topology: str) -> str:
    """How many of a topology's rounds gave only a bound on the crossing ("in 2 of 3 rounds the lower probe failed
    already: at most its rate"); "" when every round crossed between its probes."""
    mine = knee[knee["topology"] == topology]
    bounds = mine["bound"].astype(str)
    said = []
    for bound, words in (
        ("below", "the lower probe failed already: at most its rate"),
        ("above", "both probes passed: at least the upper rate"),
    ):
        count = int((bounds == bound).sum())
        if count:
            said.append(f"in {count} of {len(mine)} rounds {words}")
    return "; ".join(said)


CROSSING: Final = {"above": "at least ", "below": "at most ", "": ""}


def knee_table(ctx: Context, overs: dict[str, rounds.Over]) -> Table:
    """The knee per topology, round by round: round 0 is the search's bracket (its highest passing and lowest failing
    rate), each re-check round probes that bracket moved by a random factor; per round the two probes' rates and
    p99 (over the SLO in red, with the error rate when it broke the budget; an invalid probe flagged) and where p99
    crosses the SLO between them ("at least"/"at most" where the round gives only a bound); then the verdict's figure
    with its interval: the line fitted to every probe near the knee, or (an older run) the median over the rounds."""
    knee = ctx.table(KNEE)
    slo, budget = ctx.network.slo_p99, ctx.network.error_budget
    slo_value = float(slo) if isinstance(slo, int | float) else math.inf
    budget_value = float(budget) if isinstance(budget, int | float) else math.inf

    def p99_cell(probe: rounds.Probe | None) -> Content:
        if probe is None:
            return text("—")
        over_slo = probe.p99 > slo_value
        spans = [Span(ms(probe.p99), "bad" if over_slo else "")]
        if probe.error_rate > budget_value:
            spans.append(Span(f"errors {probe.error_rate:.2%}", "bad"))
        return (*spans, *flag(() if probe.valid else (probe.anchor,)))

    rows = []
    for topology in ctx.topologies:
        mine = knee[knee["topology"] == topology].sort_values("round")
        for index, (_, row) in enumerate(mine.iterrows()):
            low, high = rounds.knee_probes(ctx, row)
            number = int(row["round"])
            label = "search: highest pass, lowest fail" if number == 0 else f"re-check {number}"
            estimate = float(row["sustainable_rps"])
            crossing = CROSSING.get(str(row["bound"]), "") + rate_text(estimate) if math.isfinite(estimate) else "—"
            invalid = any(p is not None and not p.valid for p in (low, high))
            cells = (
                topo(topology) if index == 0 else text(""),
                text(label),
                text(rate_text(low.rate) if low is not None else "—"),
                p99_cell(low),
                text(rate_text(high.rate) if high is not None else "—"),
                p99_cell(high),
                text(crossing),
            )
            rows.append(Row(cells, anchor("knee-", topology) if index == 0 else "", "invalid" if invalid else ""))
        if len(mine):
            value = overs.get(topology)
            basis = (Span(value.basis, "sub"),) if value is not None and value.basis else ()
            median = over_content(value, rate_text) if value is not None and value.n else text(NO_RATE)
            label = "fit over the probes" if value is not None and value.fitted else "median"
            rows.append(Row((text(""), text(label), *(text("") for _ in range(4)), (*median, *basis)), css="sum"))
    header = [
        "topology",
        "round",
        "lower probe req/s",
        "its p99 ms",
        "upper probe req/s",
        "its p99 ms",
        "p99 crosses the SLO at req/s",
    ]
    return table(header, rows, left=2)


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
            details=Link("knee", "the knee, round by round", (KNEE,)),
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

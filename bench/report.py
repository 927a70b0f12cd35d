"""The comparison report: one self-contained HTML file rendered from a results directory alone.

Measure, store and render are separate: this module reads what :func:`bench.results.load_results` returns (Parquet
tables and ``meta.json``, plus the plain JSON and file names each run left under ``runs/``) and never imports a
deployment. Charts come from :mod:`bench.charts` as inline SVG; the page has no script and no external reference, so
it opens anywhere, offline, and prints.

The page is a list of sections (:data:`SECTIONS`), each one function from a :class:`Context` to HTML. The verdict
table at the top is a list of metrics (:data:`VERDICT`), each naming the tables it reads and the command that
produces them: a metric whose tables this run did not produce says "not measured in this run" and gives that command.
To report a new experiment: add its verdict fill functions to the matching metrics, write one
``section_<name>(ctx) -> str`` and insert a :class:`Section` before the method section.

Numbers are those of the results files, rounded for display only; medians of traced requests are nearest-rank
(:func:`bench.stats.percentile`), so each is a value some request actually had. Every figure that comes from an
invalid run carries a flag linking to that run's row in the validity table.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from bench import charts
from bench.results import Results, load_results
from bench.stats import percentile

num = charts.num

MIB: Final = 2**20
COMPONENT_ORDER: Final = ("monolith", "gateway", "orders", "users", "inventory", "payments", "notifications")


# -- reading the results ---------------------------------------------------------------------------------------------


@dataclass
class Context:
    """A loaded results directory and the lookups every section shares."""

    results: Results
    topologies: list[str]

    @classmethod
    def load(cls, results_dir: Path) -> Context:
        results = load_results(results_dir)
        listed = results.meta.get("parameters", {}).get("topologies") or []
        seen = [str(t) for t in results.table("steps").get("topology", pd.Series(dtype=str)).unique()]
        topologies = list(dict.fromkeys([*listed, *seen]))
        return cls(results, topologies)

    @property
    def meta(self) -> dict[str, Any]:
        return self.results.meta

    @property
    def network_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.meta.get("parameters", {}).get("network", {})
        return params

    def table(self, name: str) -> pd.DataFrame:
        return self.results.table(name)

    def has(self, *names: str) -> bool:
        return all(not self.table(name).empty for name in names)

    def step(self, topology: str, phase: str, step: int = 0) -> pd.Series | None:
        steps = self.table("steps")
        if steps.empty:
            return None
        rows = steps[(steps["topology"] == topology) & (steps["phase"] == phase) & (steps["step"] == step)]
        return rows.iloc[0] if len(rows) else None

    def invalid(self, topology: str, phase: str, step: int = 0) -> tuple[str, ...]:
        """The anchor of that run's validity row if the run is invalid, else nothing."""
        row = self.step(topology, phase, step)
        if row is None or bool(row["valid"]):
            return ()
        return (step_anchor(topology, phase, step),)

    def sweep(self, topology: str) -> pd.DataFrame:
        steps = self.table("steps")
        if steps.empty:
            return steps
        return steps[(steps["topology"] == topology) & (steps["phase"] == "sweep")].sort_values("target_rate")

    def common_rate(self) -> float | None:
        """The highest sweep rate that every topology ran (CPU per request is compared there)."""
        rates = [set(self.sweep(t)["target_rate"]) for t in self.topologies]
        common = set.intersection(*rates) if rates else set()
        return float(max(common)) if common else None

    def sweep_step(self, topology: str, rate: float) -> pd.Series | None:
        sweep = self.sweep(topology)
        rows = sweep[sweep["target_rate"] == rate]
        return rows.iloc[0] if len(rows) else None

    def traces(self, topology: str, op: str) -> pd.DataFrame:
        traces = self.table("traces")
        if traces.empty:
            return traces
        return traces[(traces["topology"] == topology) & (traces["op"] == op)]

    def run_dir(self, topology: str) -> Path:
        return self.results.path / "runs" / topology

    def process_of(self, topology: str) -> dict[str, str]:
        """Component -> the process that hosted it, from the run's ``topology.json`` (empty when it is missing)."""
        path = self.run_dir(topology) / "topology.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(c): str(p["name"]) for p in raw.get("processes", []) for c in p.get("components", [])}

    def processes(self, topology: str) -> list[str]:
        resources = self.table("resources")
        if resources.empty:
            return sorted(set(self.process_of(topology).values()))
        names = resources.loc[resources["topology"] == topology, "process"]
        return [str(n) for n in dict.fromkeys(names)]

    def databases(self, topology: str) -> int | None:
        run_dir = self.run_dir(topology)
        return len(list(run_dir.glob("*.db"))) if run_dir.is_dir() else None


def step_anchor(topology: str, phase: str, step: int) -> str:
    return "step-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{topology}-{phase}-{step}")


# -- formatting ------------------------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    """Seconds shown in milliseconds, as :func:`num` rounds them."""
    return num(None if seconds is None else seconds * 1e3)


def ratio_text(ratio: float) -> str:
    return f"×{ratio:.2f}" if ratio < 10 else f"×{ratio:.0f}"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def flag(anchors: Iterable[str]) -> str:
    """The visible mark of a figure that comes from invalid runs, linking to the (first) run's validity row."""
    unique = list(dict.fromkeys(anchors))
    if not unique:
        return ""
    text = "⚠ invalid run" if len(unique) == 1 else f"⚠ {len(unique)} invalid runs"
    return f' <a class="flag" href="#{unique[0]}" title="from an invalid run: see the validity table">{text}</a>'


def topo_head(topology: str) -> str:
    return f'<span class="dot" style="background:{charts.topology_color(topology)}"></span>{esc(topology)}'


def html_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    left: int = 1,
    text: Sequence[int] = (),
    row_attrs: Sequence[str] | None = None,
    css: str = "",
) -> str:
    """A table of already-escaped HTML cells; the first ``left`` columns and those in ``text`` are left-aligned text,
    the others figures."""

    def cls(i: int) -> str:
        return " class=l" if i < left or i in text else ""

    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        attrs = row_attrs[index] if row_attrs else ""
        cells = "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{attrs}>{cells}</tr>")
    table = f'<table class="{css}">' if css else "<table>"
    return f'<div class="scroll">{table}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def median(values: pd.Series) -> float:
    """Nearest-rank median: a value that some traced request actually had."""
    return percentile(values.to_numpy(dtype=float), 50.0)


# -- the verdict table -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One topology's figure for a metric: ``value`` (for the ratio to the monolith), its display text, and the
    anchors of the invalid runs it comes from."""

    value: float | None
    text: str
    invalid: tuple[str, ...] = ()


Fill = Callable[[Context], dict[str, Cell]]


@dataclass(frozen=True)
class Metric:
    """One row of the verdict: which aspect it informs, what it measures, the tables it reads, and the command that
    produces them. ``fill`` is None while no code renders those tables yet."""

    aspect: str
    name: str
    tables: tuple[str, ...]
    command: str
    fill: Fill | None = None
    headline: bool = False


#: The classic comparison's claim per aspect: what the measured rows test.
ASPECTS: Final[dict[str, str]] = {
    "Codebase": "one codebase vs one per service",
    "Deployment": "redeploy everything vs deploy each service on its own",
    "Scaling": "scale the whole app vs scale only the services that need it",
    "Failure impact": "the whole app goes down vs only the failed service",
    "Complexity": "one thing to run vs many moving parts",
    "Network overhead": "function calls vs calls over the network",
    "Data consistency": "one database, one transaction vs a database per service, sagas",
    "Debugging": "one process to look at vs a request spread over many",
    "Security isolation": "one trust boundary vs sensitive services isolated",
    "Stability over time": "(not in the classic table) memory and descriptors under long load",
}

NETWORK: Final = "archbench run --experiments network"


def low_op_latency(op: str, column: str) -> Fill:
    """``column`` (p50, p99...) of ``op`` in the low-load phase, from the ``ops`` table."""

    def fill(ctx: Context) -> dict[str, Cell]:
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


def cpu_low(ctx: Context) -> dict[str, Cell]:
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


def sustainable(ctx: Context) -> dict[str, Cell]:
    rates = ctx.meta.get("sustainable_throughput", {})
    out = {}
    for topology in ctx.topologies:
        if topology not in rates:
            continue
        rate = rates[topology]
        if rate is None:
            out[topology] = Cell(None, "no valid rate met the SLO")
        else:
            prefix = "≥ " if at_least(ctx, topology, float(rate)) else ""
            out[topology] = Cell(float(rate), f"{prefix}{float(rate):,.0f} req/s")
    return out


def at_least(ctx: Context, topology: str, rate: float) -> bool:
    """True when ``rate`` is the highest rate the sweep tried: the topology may sustain more."""
    sweep = ctx.sweep(topology)
    return bool(len(sweep)) and rate >= float(sweep["target_rate"].max())


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
        step = memory_step(ctx, topology)
        if step is not None:
            value = float(step["peak_rss_bytes"]) / MIB
            invalid = ctx.invalid(topology, str(step["phase"]), int(step["step"]))
            out[topology] = Cell(value, f"{num(value)} MiB", invalid)
    return out


def memory_step(ctx: Context, topology: str) -> pd.Series | None:
    steps = ctx.table("steps")
    rows = steps[steps["topology"] == topology] if not steps.empty else steps
    if rows.empty:
        return None
    return rows.sort_values("peak_rss_bytes", kind="stable").iloc[-1]


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


def per_topology(table: str, column: str) -> Callable[[Context, str], pd.Series]:
    def values(ctx: Context, topology: str) -> pd.Series:
        frame = ctx.table(table)
        if column not in frame or "topology" not in frame:
            return pd.Series(dtype=float)
        return frame.loc[frame["topology"] == topology, column].astype(float).dropna()

    return values


def mean_over_faults(table: str, column: str, fmt: str) -> Fill:
    """The mean of ``column`` over a topology's fault runs (rows of ``table``)."""
    values = per_topology(table, column)

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            mine = values(ctx, topology)
            if len(mine):
                value = float(mine.mean())
                out[topology] = Cell(value, f"{fmt.format(value)} over {len(mine)} faults")
        return out

    return fill


def worst_over_faults(table: str, column: str, unit: str) -> Fill:
    """The largest ``column`` over a topology's fault runs (rows of ``table``)."""
    values = per_topology(table, column)

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            mine = values(ctx, topology)
            if len(mine):
                value = float(mine.max())
                out[topology] = Cell(value, f"{num(value)}{unit}")
        return out

    return fill


def audits_failed(ctx: Context) -> dict[str, Cell]:
    audits, out = ctx.table("consistency"), dict[str, Cell]()
    if "consistent" not in audits:
        return out
    for topology in ctx.topologies:
        mine = audits.loc[audits["topology"] == topology, "consistent"].astype(bool)
        if len(mine):
            failed = int((~mine).sum())
            out[topology] = Cell(float(failed), f"{failed} of {len(mine)}")
    return out


def _not_yet(experiment: str) -> str:
    return f"archbench run --experiments {experiment}"


#: The verdict table, row by row, in the order of the classic comparison.
VERDICT: Final[list[Metric]] = [
    Metric("Codebase", "lines of code per deployable unit, shared vs not shared", ("codebase",), _not_yet("codebase")),
    Metric(
        "Deployment",
        "errors and time to steady state when one part is redeployed",
        ("deployment",),
        _not_yet("deployment"),
    ),
    Metric(
        "Scaling",
        "sustainable throughput on the same CPUs (p99 within the SLO, errors under budget)",
        ("steps",),
        NETWORK,
        sustainable,
        headline=True,
    ),
    Metric(
        "Scaling",
        "throughput per added replica / worker, scaling only what saturates",
        ("scaling",),
        _not_yet("scaling"),
    ),
    Metric(
        "Failure impact",
        "blast radius: share of the operation mix hurt while one part fails (mean over the faults)",
        ("failure_impact",),
        _not_yet("failure"),
        mean_over_faults("failure_impact", "blast_radius", "{:.0%}"),
    ),
    Metric(
        "Failure impact",
        "time to recover after the fault ends (worst fault)",
        ("failure_impact",),
        _not_yet("failure"),
        worst_over_faults("failure_impact", "time_to_recover", " s"),
    ),
    Metric("Complexity", "processes to run", ("resources",), NETWORK, process_count),
    Metric("Complexity", "databases", ("steps",), NETWORK, database_count),
    Metric("Complexity", "memory: peak RSS of all processes (highest step)", ("steps",), NETWORK, peak_memory),
    Metric(
        "Complexity",
        "listening ports, configuration entries, deployment-file lines",
        ("complexity",),
        _not_yet("deployment"),
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
    Metric(
        "Network overhead",
        "internal calls per checkout (median of traced)",
        ("traces",),
        NETWORK,
        traced_median("checkout", "internal_calls", ""),
    ),
    Metric(
        "Network overhead",
        "bytes on the wire inside, per checkout (median of traced)",
        ("traces",),
        NETWORK,
        traced_median("checkout", "wire_bytes", " B"),
    ),
    Metric(
        "Network overhead",
        "time between components per checkout (median of traced)",
        ("traces",),
        NETWORK,
        traced_median("checkout", "between_us", " µs"),
    ),
    Metric(
        "Network overhead",
        "CPU per successful request, all processes, at low load",
        ("steps",),
        NETWORK,
        cpu_low,
        headline=True,
    ),
    Metric(
        "Network overhead",
        "CPU per successful request at the highest rate every topology ran",
        ("steps",),
        NETWORK,
        cpu_common,
    ),
    Metric(
        "Data consistency",
        "audits after a fault that found an anomaly",
        ("consistency",),
        _not_yet("failure"),
        audits_failed,
    ),
    Metric(
        "Data consistency",
        "time until every invariant holds after a fault (worst fault)",
        ("consistency",),
        _not_yet("failure"),
        worst_over_faults("consistency", "convergence_seconds", " s"),
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
    Metric(
        "Security isolation",
        "cost of authentication between parts; who may call payments",
        ("security",),
        _not_yet("security"),
    ),
    Metric("Stability over time", "RSS and open descriptors growth under a long run", ("soak",), _not_yet("soak")),
]


def verdict_cell(cell: Cell | None, baseline: Cell | None, is_baseline: bool) -> str:
    if cell is None:
        return '<span class="nm">not in this run</span>'
    parts = [f'<span class="v">{esc(cell.text)}</span>']
    if is_baseline:
        parts.append('<span class="r">baseline</span>')
    elif (
        baseline is not None
        and baseline.value is not None
        and cell.value is not None
        and baseline.value > 0
        and math.isfinite(baseline.value)
        and math.isfinite(cell.value)
    ):
        parts.append(f'<span class="r">{ratio_text(cell.value / baseline.value)} vs monolith</span>')
    parts.append(flag(cell.invalid))
    return "".join(parts)


def verdict_rows(ctx: Context) -> list[tuple[Metric, dict[str, Cell] | None]]:
    """Each metric with its cells, or None when this run did not produce its tables."""
    return [(m, m.fill(ctx) if m.fill is not None and ctx.has(*m.tables) else None) for m in VERDICT]


def section_verdict(ctx: Context) -> str:
    rows = verdict_rows(ctx)
    header = ["Aspect", "Measured", *(topo_head(t) for t in ctx.topologies)]
    body = []
    spans = Counter(m.aspect for m, _ in rows)  # the rows of one aspect are consecutive in VERDICT
    shown: set[str] = set()
    for metric, cells in rows:
        first = ""
        if metric.aspect not in shown:
            shown.add(metric.aspect)
            claim = ASPECTS.get(metric.aspect, "")
            first = (
                f'<th class="l aspect" rowspan="{spans[metric.aspect]}">{esc(metric.aspect)}'
                f'<span class="claim">{esc(claim)}</span></th>'
            )
        if cells is None:
            if ctx.has(*metric.tables):
                why = f"measured (table {esc(', '.join(metric.tables))}) but not summarized here yet"
            else:
                why = f"not measured in this run: <code>{esc(metric.command)}</code>"
            rest = f'<td class="l nm" colspan="{len(ctx.topologies)}">{why}</td>'
        else:
            baseline = cells.get("monolith")
            rest = "".join(f"<td>{verdict_cell(cells.get(t), baseline, t == 'monolith')}</td>" for t in ctx.topologies)
        body.append(f'<tr>{first}<td class="l">{esc(metric.name)}</td>{rest}</tr>')
    head = "".join(f"<th{' class=l' if i < 2 else ''}>{h}</th>" for i, h in enumerate(header))
    table = (
        f'<div class="scroll"><table class="verdict"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    intro = (
        "<p>Each row of the classic monolith-vs-microservices comparison, filled with what this run measured on "
        "this machine, and the ratio to the monolith. <b>colocated</b> runs the microservices' code and databases in "
        "one process (calls through an in-process transport): it separates the cost of splitting data and "
        "serializing from the cost of processes and the network. Rows this run did not measure give the command "
        "that does.</p>"
    )
    return intro + headline(ctx, rows) + table


def headline(ctx: Context, rows: list[tuple[Metric, dict[str, Cell] | None]]) -> str:
    items = []
    for metric, cells in rows:
        if not metric.headline or not cells:
            continue
        figures = ", ".join(
            f"{esc(t)} <b>{esc(cells[t].text)}</b>{flag(cells[t].invalid)}" for t in ctx.topologies if t in cells
        )
        items.append(f"<li>{esc(metric.name[0].upper() + metric.name[1:])}: {figures}</li>")
    return f'<ul class="glance">{"".join(items)}</ul>' if items else ""


# -- latency sections ------------------------------------------------------------------------------------------------


def section_spectrum(ctx: Context) -> str:
    panels: dict[str, list[charts.Spectrum]] = {"all operations": [], "checkout": []}
    rows, attrs = [], []
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
            rows.append(
                [
                    topo_head(topology),
                    esc(title),
                    f"{count:,}",
                    *(ms(float(row[name])) for name, _ in charts.SPECTRUM),
                    ms(float(row["max"])),
                    "yes" if valid else flag(ctx.invalid(topology, "low")),
                ]
            )
            attrs.append("" if valid else ' class="invalid"')
    rate = ctx.network_params.get("low_rate")
    svg = charts.svg_of(
        charts.spectrum_chart(list(panels.items())), "spectrum", "latency percentile spectrum per topology"
    )
    arrival = esc(ctx.network_params.get("arrival", "?"))
    caption = (
        f"Low-load phase ({num(rate)} req/s, {arrival} arrivals, warm-up discarded). Latency is measured from the "
        "intended send time (open loop). A hollow marker is a "
        "percentile that the number of requests cannot resolve (fewer than 1/(1-p) requests): it is the maximum "
        "in disguise. A dashed line with × markers is an invalid run."
    )
    header = ["topology", "operations", "requests", *(f"{n} ms" for n, _ in charts.SPECTRUM), "max ms", "valid"]
    return figure(svg, caption) + html_table(header, rows, left=2, row_attrs=attrs)


def section_load(ctx: Context) -> str:
    curves = []
    for topology in ctx.topologies:
        sweep = ctx.sweep(topology)
        points = [
            charts.LoadPoint(float(r["offered_rate"]), float(r["p50"]), float(r["p99"]), bool(r["valid"]))
            for _, r in sweep.iterrows()
        ]
        rate = ctx.meta.get("sustainable_throughput", {}).get(topology)
        rate = None if rate is None else float(rate)
        curves.append(charts.LoadCurve(topology, points, rate, rate is not None and at_least(ctx, topology, rate)))
    slo = ctx.network_params.get("slo_p99")
    budget = ctx.network_params.get("error_budget")
    svg = charts.svg_of(charts.load_chart(curves, slo), "load", "latency against offered load")
    items = []
    for curve in curves:
        if curve.sustainable is None:
            text = "no valid sweep step met the SLO"
        else:
            text = f"{'≥ ' if curve.at_least else ''}{curve.sustainable:,.0f} req/s"
            if curve.at_least:
                text += " (the highest rate tried: it may sustain more)"
        invalid = sum(not p.valid for p in curve.points)
        note = f' <span class="flag">{invalid} of {len(curve.points)} sweep steps invalid</span>' if invalid else ""
        items.append(f"<li>{topo_head(curve.topology)}: {esc(text)}{note}</li>")
    slo_text = f"p99 ≤ {num(slo * 1e3)} ms" if slo is not None else "p99 within the SLO"
    budget_text = f" and an error rate under {budget:.2%}" if budget is not None else ""
    caption = (
        "Each point is one sweep step: its offered rate (requests scheduled per second of the measured window) and "
        "its latency percentiles. Hollow points labelled <i>invalid</i> are runs the generator could not keep on "
        "schedule; they do not count for the sustainable throughput. The sweep of a topology stops after the first "
        'step that breaks the SLO. Every step\'s figures and validity: <a href="#steps">validity table</a>.'
    )
    summary = (
        f"<p>Sustainable throughput: the highest rate of a valid step with {slo_text}{budget_text}.</p>"
        f'<ul class="plain">{"".join(items)}</ul>'
    )
    return figure(svg, caption) + summary


# -- resources -------------------------------------------------------------------------------------------------------


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


def section_resources(ctx: Context) -> str:
    low_rate = ctx.network_params.get("low_rate")
    common = ctx.common_rate()
    cpu_panels = [(f"low load ({num(low_rate)} req/s)", cpu_bars(ctx, "low"))]
    if common is not None:
        cpu_panels.append((f"sweep at {common:,.0f} req/s", cpu_bars(ctx, "sweep", common)))
    cpu_svg = charts.svg_of(
        charts.stacked_chart(cpu_panels, "CPU µs per successful request"), "cpu", "CPU per request by process"
    )
    memory_bars, rows, attrs = [], [], []
    resources = ctx.table("resources")
    for topology in ctx.topologies:
        step = memory_step(ctx, topology)
        if step is None:
            continue
        phase, index = str(step["phase"]), int(step["step"])
        mine = resources[
            (resources["topology"] == topology) & (resources["phase"] == phase) & (resources["step"] == index)
        ]
        segments = [(str(r["process"]), float(r["peak_rss_bytes"]) / MIB) for _, r in mine.iterrows()]
        invalid = ctx.invalid(topology, phase, index)
        memory_bars.append(
            charts.StackedBar(topology, segments, not invalid, total=float(step["peak_rss_bytes"]) / MIB)
        )
        for _, r in mine.iterrows():
            low = resources[
                (resources["topology"] == topology)
                & (resources["phase"] == "low")
                & (resources["process"] == r["process"])
            ]
            rows.append(
                [
                    topo_head(topology),
                    esc(r["process"]),
                    num(float(low["cpu_seconds"].iloc[0])) if len(low) else "—",
                    num(float(low["cpu_per_request_us"].iloc[0])) if len(low) else "—",
                    num(float(r["peak_rss_bytes"]) / MIB),
                    f"{esc(phase)} {index} ({float(step['target_rate']):g} req/s)",
                    flag(invalid) or "yes",
                ]
            )
            attrs.append(' class="invalid"' if invalid else "")
    memory_svg = charts.svg_of(
        charts.stacked_chart([("peak RSS, the step with the highest total", memory_bars)], "MiB", " MiB"),
        "memory",
        "peak memory by process",
    )
    cpu_caption = (
        "CPU seconds (user + system, psutil) of every process of the system under test during the measured run, "
        "divided by the successful requests of that run. The load generator runs on other CPUs and is not counted. "
        "CPU time is counted in 10 ms clock ticks: a process that used 0.05 s is known to ±20%."
    )
    header = ["topology", "process", "CPU s at low load", "CPU µs/request at low load", "peak RSS MiB", "peak in step"]
    header.append("valid")
    return (
        figure(cpu_svg, cpu_caption)
        + figure(memory_svg, "Peak resident memory (the kernel's high-water mark, VmHWM) of each process.")
        + html_table(header, rows, left=2, row_attrs=attrs)
    )


# -- the waterfall ---------------------------------------------------------------------------------------------------


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
    bars = [
        charts.Bar(
            f"{root['app']}  {root['name']}",
            str(root["app"]),
            str(root["app"]),
            0.0,
            float(root["duration_us"]),
        )
    ]
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


def section_waterfall(ctx: Context) -> str:
    waterfalls = []
    for topology in ctx.topologies:
        trace = median_trace(ctx, topology, "checkout")
        if trace is not None:
            waterfalls.append(waterfall_of(ctx, topology, trace, len(ctx.traces(topology, "checkout"))))
    parts = []
    if waterfalls and ctx.has("spans"):
        svg = charts.svg_of(charts.waterfall_chart(waterfalls), "waterfall", "waterfall of one traced checkout")
        caption = (
            "One traced checkout per topology (the one with the median harness-side latency), sent at a low constant "
            "rate with a sampled <code>traceparent</code>. Each row is one internal call: the light bar is the "
            "caller waiting on it, the solid bar the callee's own server span (coloured by component). The gap "
            "between them is serialization, transport and queueing. Colocated components share one process; "
            "microservices components each have their own."
        )
        parts.append(figure(svg, caption))
    parts.append("<h3>Per-operation breakdown (medians of traced requests, µs)</h3>")
    parts.append(breakdown_table(ctx))
    return "".join(parts)


def breakdown_table(ctx: Context) -> str:
    traces = ctx.table("traces")
    found = [str(c)[3:-3] for c in traces.columns if re.fullmatch(r"in_.+_us", str(c)) and traces[c].notna().any()]
    components = [c for c in COMPONENT_ORDER if c in found] + sorted(set(found) - set(COMPONENT_ORDER))
    header = ["topology", "operation", "traced", *(h for _, h in BREAKDOWN_COLUMNS)]
    header += [*(f"in {c}" for c in components), "valid"]
    rows, attrs = [], []
    for topology in ctx.topologies:
        mine = traces[traces["topology"] == topology]
        invalid = ctx.invalid(topology, "traced")
        for op, group in mine.groupby("op", sort=True):
            figures = [num(median(group[col])) if col in group else "—" for col, _ in BREAKDOWN_COLUMNS]
            inside = [
                num(median(group[f"in_{c}_us"].dropna())) if group[f"in_{c}_us"].notna().any() else "—"
                for c in components
            ]
            validity = flag(invalid) if invalid else "yes"
            rows.append([topo_head(topology), esc(op), str(len(group)), *figures, *inside, validity])
            attrs.append(' class="invalid"' if invalid else "")
    note = (
        "<p class=note>Each column is a median on its own, so the columns need not add up. <i>Harness</i>: the "
        "latency the load generator saw. <i>Outside entry</i>: that latency minus the entry process's span (the "
        "generator, the kernel, loopback). <i>Entry span</i>: the entry process's server span. <i>Between</i>: over "
        "a request's internal calls, the caller's wait minus the callee's span (serialization, transport, "
        "queueing). <i>In X</i>: X's server spans minus the time X waited on its own calls.</p>"
    )
    return html_table(header, rows, left=2, row_attrs=attrs, css="wide") + note


# -- decomposition ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decomposed:
    """One figure of the decomposition: its cells per topology, and the factor from cell values to ``unit``."""

    name: str
    unit: str
    cells: dict[str, Cell]
    scale: float = 1.0
    chart: bool = True


def section_decomposition(ctx: Context) -> str:
    needed = ("monolith", "colocated", "microservices")
    if not set(needed) <= set(ctx.topologies):
        return '<p class="nm">Needs monolith, colocated and microservices in one run: <code>archbench run</code>.</p>'
    common = ctx.common_rate()
    figures = [
        Decomposed("checkout p50 at low load", "ms", low_op_latency("checkout", "p50")(ctx), scale=1e3),
        Decomposed("CPU per request at low load", "µs", cpu_low(ctx)),
    ]
    if common is not None:
        figures.append(Decomposed(f"CPU per request at {common:,.0f} req/s", "µs", cpu_common(ctx)))
    between = traced_median("checkout", "between_us", "")(ctx)
    figures.append(Decomposed("checkout: time between components (traced median)", "µs", between, chart=False))
    bridges, rows, attrs = [], [], []
    for fig in figures:
        if not all(t in fig.cells and fig.cells[t].value is not None for t in needed):
            continue
        mono, colo, micro = (float(fig.cells[t].value or 0.0) * fig.scale for t in needed)
        valid = (not fig.cells["monolith"].invalid, not fig.cells["colocated"].invalid)
        valid3 = (*valid, not fig.cells["microservices"].invalid)
        if fig.chart:
            bridges.append(charts.Bridge(fig.name, fig.unit, mono, colo, micro, valid3))
        growth = micro - mono
        share = f"{(colo - mono) / growth:.0%}" if growth > 0 else "—"
        invalid = [a for t in needed for a in fig.cells[t].invalid]
        cells = [esc(f"{fig.name} ({fig.unit})"), num(mono), num(colo), num(micro)]
        rows.append([*cells, charts.signed(colo - mono), charts.signed(micro - colo), share, flag(invalid) or "yes"])
        attrs.append(' class="invalid"' if invalid else "")
    caption = (
        "From the monolith to the colocated topology the code is split into services with their own databases and "
        "every call serializes a request, but stays in one process; from colocated to microservices the services "
        "move into their own processes and talk over loopback HTTP. CPU per request is over the whole operation "
        "mix (the harness does not attribute CPU to operations)."
    )
    header = [
        "figure",
        *(topo_head(t) for t in needed),
        "split data, serialize",
        "processes, network",
        "share of the increase from splitting",
        "valid",
    ]
    chart = ""
    if bridges:
        chart = figure(
            charts.svg_of(charts.bridge_chart(bridges), "bridge", "decomposition of the cost of microservices"), caption
        )
    return chart + html_table(header, rows, left=1, row_attrs=attrs)


# -- method and environment ------------------------------------------------------------------------------------------


def kv_table(pairs: Iterable[tuple[str, object]]) -> str:
    rows = "".join(
        f'<tr><th class="l key">{esc(k)}</th><td class=l>{f"<code>{esc(v)}</code>" if v not in (None, "") else "—"}'
        "</td></tr>"
        for k, v in pairs
    )
    return f'<div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>'


def section_method(ctx: Context) -> str:
    env: dict[str, Any] = ctx.meta.get("environment", {})
    params: dict[str, Any] = ctx.meta.get("parameters", {})
    memory = env.get("memory_bytes")
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    hardware = [
        ("CPU", env.get("cpu_model")),
        ("cores", env.get("cpu_count")),
        ("memory", f"{memory / 2**30:.1f} GiB" if memory else None),
        ("platform", env.get("platform")),
        ("Python", env.get("python")),
        ("packages", packages),
        ("git commit", env.get("git_commit")),
        ("recorded at", env.get("recorded_at")),
        ("wall time of the run", f"{ctx.meta['wall_seconds']:.0f} s" if "wall_seconds" in ctx.meta else None),
    ]
    pinning = [
        ("system under test on CPUs", params.get("sut_cpus")),
        ("load generator on CPUs", params.get("generator_cpus")),
        ("CPUs this process could use", env.get("cpus_available")),
        ("inter-service HTTP client", params.get("stack")),
        ("topologies", ", ".join(params.get("topologies") or ctx.topologies)),
        ("experiments", ", ".join(params.get("experiments") or [])),
        ("quick", params.get("quick")),
    ]
    network = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in ctx.network_params.items()]
    command = env.get("command") or "archbench run"
    reproduce = (
        f"<pre><code>{esc(command)}</code></pre><p class=note>at git commit <code>{esc(env.get('git_commit'))}</code>"
        ". Seeds: the catalog, users and low-load schedule use <code>seed</code>; sweep step <i>i</i> uses "
        "<code>seed + i</code>. Rates are requests per second, durations seconds.</p>"
    )
    principles = (
        '<ul class="plain note">'
        "<li>Open loop: requests are scheduled at the target rate and latency is measured from the intended send "
        "time, so a slow server cannot slow the generator down and hide its own latency.</li>"
        "<li>A run is <b>invalid</b> when its achieved rate is under 99% of the target or its send lag p99 exceeds "
        "1 ms: the generator did not keep its schedule. Invalid runs stay in the data and are flagged everywhere.</li>"
        "<li>Warm-up requests are discarded; percentiles are nearest-rank; errors count in the latency with the time "
        "they took.</li>"
        "<li>The system under test and the generator run on disjoint CPUs, the same for every topology.</li>"
        "</ul>"
    )
    return (
        principles
        + "<h3>Reproduce</h3>"
        + reproduce
        + '<div class="cols"><div><h3>Hardware and software</h3>'
        + kv_table(hardware)
        + "</div>"
        + "<div><h3>Pinning and topologies</h3>"
        + kv_table(pinning)
        + "<h3>Parameters of the network experiment</h3>"
        + kv_table(network)
        + "</div></div>"
        + '<h3 id="steps">Every run and its validity</h3>'
        + validity_table(ctx)
    )


def validity_table(ctx: Context) -> str:
    steps = ctx.table("steps")
    if steps.empty:
        return '<p class="nm">No run in this results directory.</p>'
    header = [
        "topology",
        "phase",
        "step",
        "target /s",
        "offered /s",
        "achieved /s",
        "requests",
        "conns",
        "send lag p99 ms",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU µs/req",
        "valid",
        "reasons",
    ]
    rows, attrs = [], []
    order = {t: i for i, t in enumerate(ctx.topologies)}
    phases = {"low": 0, "traced": 1, "sweep": 2}
    ranked = steps.assign(_t=steps["topology"].map(order), _p=steps["phase"].map(phases).fillna(9))
    for _, r in ranked.sort_values(["_t", "_p", "step"]).iterrows():
        valid = bool(r["valid"])
        anchor = step_anchor(str(r["topology"]), str(r["phase"]), int(r["step"]))
        rows.append(
            [
                topo_head(str(r["topology"])),
                esc(r["phase"]),
                str(int(r["step"])),
                num(float(r["target_rate"])),
                num(float(r["offered_rate"])),
                num(float(r["achieved_rate"])),
                f"{int(r['requests']):,}",
                str(int(r["connections"])) if "connections" in r else "—",
                ms(float(r["send_lag_p99"])),
                ms(float(r["p50"])),
                ms(float(r["p99"])),
                f"{float(r['error_rate']):.2%}",
                num(float(r["cpu_per_request_us"])),
                "yes" if valid else '<span class="flag">INVALID</span>',
                f'<div class="why">{esc(r.get("invalid_reasons", "") or "")}</div>',
            ]
        )
        attrs.append(f' id="{anchor}"' + ("" if valid else ' class="invalid"'))
    return html_table(header, rows, left=2, text=(len(header) - 1,), row_attrs=attrs, css="wide")


# -- the page --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One section of the page: rendered by ``render`` when this run produced ``tables``, else a note with
    ``command``."""

    id: str
    title: str
    render: Callable[[Context], str]
    tables: tuple[str, ...] = ()
    command: str = NETWORK


SECTIONS: Final[list[Section]] = [
    Section("verdict", "Verdict: the classic comparison, measured", section_verdict),
    Section("spectrum", "Latency percentile spectrum at low load", section_spectrum, ("steps", "ops")),
    Section("load", "Latency against offered load", section_load, ("steps",)),
    Section("resources", "CPU per request and memory, by process", section_resources, ("steps", "resources")),
    Section("waterfall", "Where the time goes: one traced checkout per topology", section_waterfall, ("traces",)),
    Section(
        "decomposition", "Decomposition: monolith → colocated → microservices", section_decomposition, ("steps", "ops")
    ),
    Section("method", "Method and environment", section_method),
]


def render_section(ctx: Context, section: Section) -> str:
    if ctx.has(*section.tables):
        body = section.render(ctx)
    else:
        body = f'<p class="nm">Not measured in this run: <code>{esc(section.command)}</code></p>'
    return f'<section id="{section.id}"><h2>{esc(section.title)}</h2>{body}</section>'


def stylesheet() -> str:
    colours = "".join(f".t-{t}{{color:{c}}}" for t, c in charts.TOPOLOGY_COLORS.items())
    return CSS + colours


CSS: Final = """
*{box-sizing:border-box}
body{margin:0;color:#1d2330;background:#fff;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",
Arial,sans-serif;-webkit-print-color-adjust:exact;print-color-adjust:exact}
main{max-width:1200px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:40px 0 12px;padding-bottom:4px;border-bottom:2px solid #e3e6ee}
h3{font-size:15px;margin:24px 0 8px}
.sub{color:#555;margin:0 0 16px}
nav ol{margin:8px 0 0;padding-left:20px;columns:2;column-gap:32px}
a{color:#0b57a8}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
code{background:#f3f4f7;padding:1px 4px;border-radius:3px}
pre{background:#f3f4f7;padding:10px 12px;border-radius:4px;overflow-x:auto;white-space:pre-wrap}
pre code{background:none;padding:0}
.scroll{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
th,td{padding:4px 6px;border-bottom:1px solid #e3e6ee;text-align:right;vertical-align:top}
th{background:#f6f7fa;font-weight:600}
.l{text-align:left}
.why{min-width:300px}
table.wide{font-size:12px}
table.verdict{width:100%}
table.verdict td{min-width:150px}
table.verdict td.l{min-width:220px}
th.aspect{background:#fafbfc;width:160px}
.claim{display:block;font-weight:400;color:#666;font-size:11.5px;margin-top:2px}
.v{font-weight:600;display:block}
.r{display:block;color:#555;font-size:11.5px}
.nm{color:#777;font-style:italic}
.flag{color:#b00020;font-weight:600;font-size:11.5px;white-space:nowrap;display:inline-block;margin-left:4px}
td:first-child{white-space:nowrap}
table.kv th.key{background:none;font-weight:400;color:#444;white-space:nowrap}
a.flag{text-decoration:none}
tr.invalid td{background:#fff1f0}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px;vertical-align:baseline}
figure{margin:16px 0}
figure svg{display:block;max-width:100%;height:auto}
figcaption,.note{color:#555;font-size:12.5px;max-width:980px}
ul.plain{padding-left:18px}
ul.glance{background:#f6f7fa;border-left:4px solid #0072B2;padding:8px 12px 8px 28px;margin:12px 0}
.banner{border-left:4px solid #b00020;background:#fff5f5;padding:8px 12px;margin:12px 0}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:900px){.cols{grid-template-columns:1fr}nav ol{columns:1}}
@page{size:A4;margin:12mm}
@media print{
body{font-size:10pt}main{max-width:none;padding:0}nav{display:none}
h2{break-after:avoid;margin-top:20px}h3{break-after:avoid}
figure,tr,.glance,.banner{break-inside:avoid}
.scroll{overflow:visible}table{font-size:8.5pt}a{color:inherit;text-decoration:none}
table.wide{font-size:7pt}table.wide th,table.wide td{padding:2px 3px}
table.wide .flag{white-space:normal}.why{min-width:160px}
.cols{grid-template-columns:1fr 1fr}
}
"""


def banner(ctx: Context) -> str:
    steps = ctx.table("steps")
    if steps.empty:
        return ""
    invalid = int((~steps["valid"].astype(bool)).sum())
    if not invalid:
        return ""
    return (
        f'<p class="banner"><b>{invalid} of {len(steps)} runs are invalid</b>: the load generator could not keep '
        "its schedule (or the achieved rate fell short), so their latencies are not trustworthy. Figures that come "
        'from them are marked <span class="flag">⚠ invalid run</span>; reasons are in the '
        '<a href="#steps">validity table</a>. On a small machine, a longer or lower-rate run usually helps.</p>'
    )


def render_html(ctx: Context) -> str:
    """The whole page as one string."""
    env = ctx.meta.get("environment", {})
    nav = "".join(f'<li><a href="#{s.id}">{esc(s.title)}</a></li>' for s in SECTIONS)
    sections = "".join(render_section(ctx, s) for s in SECTIONS)
    subtitle = (
        f"{esc(', '.join(ctx.topologies))} · {esc(env.get('cpu_model', 'unknown CPU'))}, "
        f"{esc(env.get('cpu_count', '?'))} cores · recorded {esc(env.get('recorded_at', '?'))} · "
        f"<code>{esc(env.get('command', ''))}</code>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>archbench: monolith vs microservices, measured</title>"
        f"<style>{stylesheet()}</style></head><body><main>"
        "<h1>archbench: what splitting into microservices costs, measured</h1>"
        f'<p class="sub">{subtitle}</p>{banner(ctx)}'
        f"<nav><b>Contents</b><ol>{nav}</ol></nav>{sections}"
        "</main></body></html>\n"
    )


def render_report(results_dir: Path, out_file: Path | None = None) -> Path:
    """Render the HTML report of ``results_dir`` into ``out_file`` (default ``results_dir / "report.html"``).

    Reads only the results directory; returns the path written.
    """
    results_dir = Path(results_dir)
    out = Path(out_file) if out_file is not None else results_dir / "report.html"
    page = render_html(Context.load(results_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out

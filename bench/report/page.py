"""The comparison report: one self-contained HTML file rendered from a results directory alone.

Measure, store and render are separate: this module reads what :func:`bench.report.results.load_results` returns
(Parquet tables and ``meta.json``, plus the plain JSON and file names each run left under ``runs/``) and never imports
a deployment. Charts come from :mod:`bench.report.charts` as inline SVG; the page has no script and no external
reference, so it opens anywhere, offline, and prints.

The page is a list of sections (:data:`SECTIONS`), each one function from a :class:`Context` to HTML. The verdict
table at the top is a list of metrics (:data:`VERDICT`), each naming the tables it reads and the command that
produces them: a metric whose tables this run did not produce says "not measured in this run" and gives that command.
To report a new experiment: add its verdict fill functions to the matching metrics, write one
``section_<name>(ctx) -> str`` and insert a :class:`Section` before the method section.

Numbers are those of the results files, rounded for display only; medians of traced requests are nearest-rank
(:func:`bench.common.stats.percentile`), so each is a value some request actually had. Every figure that comes from an
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

import numpy as np
import pandas as pd

from bench.common import usl
from bench.common.names import HEALTHY_SUCCESS, INVARIANTS, RESTART_SCENARIOS, SCALING_MIXES
from bench.common.stats import disturbed_above, percentile
from bench.report import charts
from bench.report.results import Results, load_results

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
        for name in ("failure_timeline", "failure_impact", "consistency"):
            frame = results.tables.get(name)
            if frame is not None and "profile" in frame.columns:
                # Each fault ran under every resilience profile: the profile is part of what the row is about.
                frame = frame.copy()
                frame["fault"] = frame["fault"].astype(str) + " (" + frame["profile"].astype(str) + ")"
                results.tables[name] = frame
        listed = results.meta.get("parameters", {}).get("topologies") or []
        seen = [
            str(t)
            for name in ("steps", "failure_impact", "consistency", "scaling", "deployment")
            for t in results.table(name).get("topology", pd.Series(dtype=str)).unique()
        ]
        topologies = list(dict.fromkeys([*listed, *seen]))
        return cls(results, topologies)

    @property
    def meta(self) -> dict[str, Any]:
        return self.results.meta

    @property
    def network_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.meta.get("parameters", {}).get("network", {})
        return params

    @property
    def failure_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.meta.get("parameters", {}).get("failure", {})
        return params

    @property
    def failure_slo(self) -> float | None:
        slo = self.failure_params.get("slo_p99")
        return None if slo is None else float(slo)

    def table(self, name: str) -> pd.DataFrame:
        return self.results.table(name)

    def faults(self) -> list[str]:
        """The faults that have results, in the order of the fault matrix (then any the matrix does not list)."""
        seen: list[str] = []
        for name in ("failure_impact", "consistency", "failure_timeline"):
            seen += [str(f) for f in self.table(name).get("fault", pd.Series(dtype=str)).unique()]
        planned = [f"{f.get('kind')}:{f.get('target')}" for f in self.failure_params.get("faults", [])]
        profiles = list(self.failure_params.get("profiles", []))

        def order(fault: str) -> tuple[int, int, str]:
            base, _, profile = fault.partition(" (")
            profile = profile.rstrip(")")
            return (
                planned.index(base) if base in planned else len(planned),
                profiles.index(profile) if profile in profiles else len(profiles),
                fault,
            )

        return sorted(dict.fromkeys(seen), key=order)

    def failure_topologies(self) -> list[str]:
        """The topologies that have fault runs, in the report's order."""
        seen = {
            str(t)
            for name in ("failure_impact", "consistency", "failure_timeline")
            for t in self.table(name).get("topology", pd.Series(dtype=str)).unique()
        }
        return [t for t in self.topologies if t in seen]

    def fault_run(self, topology: str, fault: str) -> pd.Series | None:
        """The ``failure_impact`` row of one fault run."""
        impact = self.table("failure_impact")
        if impact.empty:
            return None
        rows = impact[(impact["topology"] == topology) & (impact["fault"] == fault)]
        return rows.iloc[0] if len(rows) else None

    def fault_invalid(self, topology: str, fault: str) -> tuple[str, ...]:
        """The anchor of that fault run's row if its load run is invalid, else nothing."""
        row = self.fault_run(topology, fault)
        if row is None or bool(row.get("load_valid", True)):
            return ()
        return (fault_anchor(topology, fault),)

    def fault_window(self) -> tuple[float, float] | None:
        """The fault window in seconds of the load (from the parameters; else the seconds marked ``in_fault``)."""
        params = self.failure_params
        if all(isinstance(params.get(k), int | float) for k in ("warmup", "before", "window")):
            start = float(params["warmup"]) + float(params["before"])
            return start, start + float(params["window"])
        timeline = self.table("failure_timeline")
        if "in_fault" not in timeline:
            return None
        seconds = timeline.loc[timeline["in_fault"].astype(bool), "second"]
        return (float(seconds.min()), float(seconds.max()) + 1.0) if len(seconds) else None

    def fault_label(self, fault: str) -> str:
        """The fault's name with its strength, from the fault matrix: ``latency:inventory +200 ms (naive)``."""
        base, _, profile = fault.partition(" (")
        suffix = f" ({profile}" if profile else ""
        for plan in self.failure_params.get("faults", []):
            if f"{plan.get('kind')}:{plan.get('target')}" != base:
                continue
            value = float(plan.get("value") or 0.0)
            if plan.get("kind") == "latency" and value:
                return f"{base} +{value * 1e3:g} ms{suffix}"
            if plan.get("kind") == "error" and value:
                return f"{base} {value:.0%}{suffix}"
        return fault

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


def fault_anchor(topology: str, fault: str) -> str:
    """The id of a fault run's row in the blast radius and recovery table."""
    return "fault-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{topology}-{fault}")


def audit_anchor(topology: str, fault: str) -> str:
    """The id of a fault run's row in the consistency table."""
    return "audit-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{topology}-{fault}")


def scaling_anchor(topology: str, mix: str, replicas: int) -> str:
    """The id of a scaling step's row in the table of steps."""
    return "scale-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{topology}-{mix}-{replicas}")


def deployment_anchor(scenario: str) -> str:
    """The id of a restart scenario's row in the deployment table."""
    return "deploy-" + re.sub(r"[^A-Za-z0-9_-]", "_", scenario)


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


def alarm(anchors: Iterable[str]) -> str:
    """The mark of an audit that found an anomaly: loud on purpose, since any anomaly is a bug."""
    unique = list(dict.fromkeys(anchors))
    if not unique:
        return ""
    return f' <a class="alarm" href="#{unique[0]}" title="the consistency audit found an anomaly">⚠ ANOMALY</a>'


def duration_text(seconds: float) -> str:
    """A duration in ms under a second, else in s."""
    if not math.isfinite(seconds):
        return "—"
    return f"{ms(seconds)} ms" if abs(seconds) < 1.0 else f"{num(seconds)} s"


def detect_text(seconds: float) -> str:
    """The time to detect as the experiment records it (the start of the first unhealthy whole second of the load,
    from the fault's start: negative when the fault began within that second), shown as the span it bounds."""
    if not math.isfinite(seconds):
        return "no unhealthy second"
    low, high = max(0.0, seconds), seconds + 1.0
    return f"≤ {short(high)} s" if low == 0 else f"{short(low)} – {short(high)} s"


def recover_text(seconds: float) -> str:
    """The time to recover as recorded: the end of the last unhealthy whole second after the fault ended, so an
    upper bound."""
    if not math.isfinite(seconds):
        return "—"
    return "0 s" if seconds <= 0 else f"≤ {short(seconds)} s"


def short(seconds: float) -> str:
    """Seconds with at most two decimals and no trailing zeros (the fault windows are set in tenths of a second)."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def nowrap(text: str) -> str:
    return f'<span class="nw">{esc(text)}</span>'


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
        if i < left:
            return ' class="l nw"'
        return " class=l" if i in text else ""

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
    """One topology's figure for a metric: ``value`` (for the ratio to the monolith), its display text, the anchors
    of the invalid runs it comes from, and the anchors of the audits that found an anomaly (shown as an alarm)."""

    value: float | None
    text: str
    invalid: tuple[str, ...] = ()
    alarm: tuple[str, ...] = ()


Fill = Callable[[Context], dict[str, Cell]]


@dataclass(frozen=True)
class Metric:
    """One row of the verdict: which aspect it informs, what it measures, the tables it reads, and the command that
    produces them. ``fill`` is None while no code renders those tables yet. ``ratio``: whether the ratio to the
    monolith means something (it does not for a count that must be 0)."""

    aspect: str
    name: str
    tables: tuple[str, ...]
    command: str
    fill: Fill | None = None
    headline: bool = False
    ratio: bool = True


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
FAILURE: Final = "archbench run --experiments failure"
SCALING: Final = "archbench run --experiments scaling"
DEPLOYMENT: Final = "archbench run --experiments deployment"


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


def fault_rows(ctx: Context, table: str, topology: str, column: str | None = None) -> pd.DataFrame:
    """``topology``'s rows of a failure table (``failure_impact``, ``consistency``), with a value in ``column`` if
    given."""
    frame = ctx.table(table)
    if "topology" not in frame or (column is not None and column not in frame):
        return frame.iloc[0:0]
    rows = frame[frame["topology"] == topology]
    return rows[rows[column].notna()] if column is not None else rows


def faults_invalid(ctx: Context, rows: pd.DataFrame) -> tuple[str, ...]:
    """The anchors of the invalid load runs among ``rows`` (rows of a failure table)."""
    return tuple(a for t, f in zip(rows["topology"], rows["fault"], strict=True) for a in ctx.fault_invalid(t, f))


def mean_over_faults(table: str, column: str, fmt: str) -> Fill:
    """The mean of ``column`` over a topology's fault runs (rows of ``table``)."""

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            rows = fault_rows(ctx, table, topology, column)
            if len(rows):
                value = float(rows[column].astype(float).mean())
                out[topology] = Cell(value, f"{fmt.format(value)} over {len(rows)} faults", faults_invalid(ctx, rows))
        return out

    return fill


def worst_fault(table: str, column: str, text: Callable[[float], str], *, load_figure: bool = True) -> Fill:
    """The largest ``column`` over a topology's fault runs (rows of ``table``), and the fault that had it.

    A ``load_figure`` comes from the load run, so an invalid load run flags it; an audit's figure does not (the
    databases say what they say, whether or not the generator kept its schedule)."""

    def fill(ctx: Context) -> dict[str, Cell]:
        out = {}
        for topology in ctx.topologies:
            rows = fault_rows(ctx, table, topology, column)
            if rows.empty:
                continue
            values = rows[column].astype(float)
            worst = float(values.max())
            at = rows[values == worst]
            names = [str(f) for f in at["fault"]]
            if len(names) == 1:
                which = names[0]
            else:
                which = "every fault" if len(names) == len(rows) else f"{names[0]} and {len(names) - 1} more"
            invalid = faults_invalid(ctx, at) if load_figure else ()
            out[topology] = Cell(worst, f"{text(worst)} ({which})", invalid)
        return out

    return fill


def anomaly_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if str(c).startswith("anomalies_")]


def failed_audits(rows: pd.DataFrame) -> pd.DataFrame:
    """The audits among ``rows`` (of ``consistency``) that did not end consistent."""
    if "consistent" not in rows:
        return rows.iloc[0:0]
    return rows[~rows["consistent"].astype(bool)]


def anomalies_found(ctx: Context) -> dict[str, Cell]:
    """Anomalies over every audit of a topology, and which invariants they break: anything but 0 is a bug."""
    out = {}
    for topology in ctx.topologies:
        rows = fault_rows(ctx, "consistency", topology)
        if rows.empty:
            continue
        failed = failed_audits(rows)
        columns = anomaly_columns(rows)
        count = int(rows[columns].to_numpy().sum()) if columns else 0
        if failed.empty and count == 0:
            out[topology] = Cell(0.0, f"none in {len(rows)} audits")
            continue
        broken = [c.removeprefix("anomalies_") for c in columns if int(rows[c].sum())]
        text = f"{count} in {len(failed)} of {len(rows)} audits" + (f": {', '.join(broken)}" if broken else "")
        alarm = tuple(audit_anchor(topology, str(f)) for f in failed["fault"])
        out[topology] = Cell(float(count), text, alarm=alarm or (audit_anchor(topology, str(rows["fault"].iloc[0])),))
    return out


def convergence_worst(ctx: Context) -> dict[str, Cell]:
    """The longest time from the end of the load until every invariant held; "never" when an audit still failed."""
    out = worst_fault("consistency", "convergence_seconds", duration_text, load_figure=False)(ctx)
    settle = ctx.failure_params.get("settle_timeout")
    within = f" within the {num(float(settle))} s allowed" if settle is not None else ""
    for topology in ctx.topologies:
        rows = fault_rows(ctx, "consistency", topology)
        failed = failed_audits(rows)
        if len(failed):
            alarm = tuple(audit_anchor(topology, str(f)) for f in failed["fault"])
            out[topology] = Cell(None, f"never{within} ({len(failed)} of {len(rows)} audits)", alarm=alarm)
    return out


def codebase_fill(ctx: Context) -> dict[str, Cell]:
    """Lines per deployable unit (colocated deploys the microservices' code in one process)."""
    table = ctx.table("codebase")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        units = table[table["topology"] == ("monolith" if topology == "monolith" else "microservices")]
        if units.empty:
            continue
        lines, own = units["lines"], units["own_lines"]
        if len(units) == 1:
            text = f"1 unit, {int(lines.iloc[0]):,} lines ({int(own.iloc[0]):,} its own)"
        else:
            text = (
                f"{len(units)} units, {int(lines.min()):,}–{int(lines.max()):,} lines each "
                f"({int(own.min()):,}–{int(own.max()):,} their own)"
            )
        if topology == "colocated":
            text += ", run as one process"
        out[topology] = Cell(float(lines.sum()), text)
    return out


def complexity_fill(ctx: Context) -> dict[str, Cell]:
    """Counted from the deployment files (colocated has none of its own: it is a local-only topology)."""
    table = ctx.table("complexity")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        rows = table[(table["topology"] == topology) & table["compose_lines"].notna()]
        if rows.empty:  # no deployment files (colocated), only the counts of its running processes
            continue
        row = rows.iloc[0]
        lines = int(row["compose_lines"]) + int(row["k8s_lines"])
        text = f"{int(row['listening_ports'])} ports, {int(row['config_entries'])} config entries, {lines:,} lines"
        out[topology] = Cell(float(lines), text)
    return out


def security_fill(ctx: Context) -> dict[str, Cell]:
    """CPU per request with every access check on, against the same load with them off."""
    table = ctx.table("security")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        rows = table[table["topology"] == topology]
        on, off = rows[rows["auth"].astype(bool)], rows[~rows["auth"].astype(bool)]
        if on.empty or off.empty:
            continue
        cpu_on, cpu_off = float(on["cpu_per_request_us"].iloc[0]), float(off["cpu_per_request_us"].iloc[0])
        p50_on, p50_off = float(on["p50"].iloc[0]), float(off["p50"].iloc[0])
        text = (
            f"+{cpu_on - cpu_off:,.0f} µs CPU/request ({cpu_on:,.0f} vs {cpu_off:,.0f}); "
            f"p50 {p50_on * 1e3:.2f} vs {p50_off * 1e3:.2f} ms"
        )
        valid = bool(on["valid"].iloc[0]) and bool(off["valid"].iloc[0])
        if topology == "monolith":
            # One process, one memory, one database: nothing stops one module from calling or reading another's.
            text += "; inside, only the edge can be checked: modules share one process and one database"
        out[topology] = Cell(cpu_on - cpu_off, text + ("" if valid else " (invalid run)"))
    return out


def soak_fill(ctx: Context) -> dict[str, Cell]:
    """The largest growth of RSS and of open descriptors over the soak, across the topology's processes."""
    table = ctx.table("soak_summary")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        rows = table[table["topology"] == topology]
        if rows.empty:
            continue
        rss, fds = float(rows["rss_growth"].max()), float(rows["fds_growth"].max())
        minutes = float((rows["t_end"] - rows["t_start"]).max()) / 60
        text = f"RSS {rss:+.1%}, descriptors {fds:+.1%} (worst process, {minutes:.1f} min)"
        valid = bool(rows["valid"].astype(bool).all())
        out[topology] = Cell(rss, text + ("" if valid else " (invalid run)"))
    return out


# Scaling and deployment (issue 6): the rows of the verdict, and the lookups their sections share.

#: The mixes of the scaling experiment in the report's order (any other follows).
#: The restart scenarios in the report's order: each topology with one replica, then with several.


def scaling_model(ctx: Context) -> pd.DataFrame:
    """The ``scaling_model`` table as the run wrote it, else fitted here from ``scaling`` by the same function."""
    model = ctx.table("scaling_model")
    return model if not model.empty else usl.model_frame(ctx.table("scaling"))


def scaling_mixes(ctx: Context) -> list[str]:
    seen = [str(m) for m in ctx.table("scaling").get("mix", pd.Series(dtype=str)).unique()]
    return [m for m in SCALING_MIXES if m in seen] + [m for m in seen if m not in SCALING_MIXES]


def scaling_topologies(ctx: Context) -> list[str]:
    seen = {str(t) for t in ctx.table("scaling").get("topology", pd.Series(dtype=str)).unique()}
    return [t for t in ctx.topologies if t in seen]


def scaling_rows(ctx: Context, topology: str, mix: str) -> pd.DataFrame:
    """One topology's steps of one mix, by replicas."""
    scaling = ctx.table("scaling")
    if scaling.empty:
        return scaling
    return scaling[(scaling["topology"] == topology) & (scaling["mix"] == mix)].sort_values("replicas")


def model_row(models: pd.DataFrame, topology: str, mix: str) -> pd.Series | None:
    if models.empty:
        return None
    rows = models[(models["topology"] == topology) & (models["mix"] == mix)]
    return rows.iloc[0] if len(rows) else None


def replica_noun(scaled: str) -> str:
    """A monolith scales by workers (processes of the one app), a service by replicas."""
    return "worker" if scaled == "monolith" else "replica"


def replicas_text(count: int, scaled: str) -> str:
    """``2 workers`` (the monolith), ``2 replicas of inventory`` (a service)."""
    text = plural(count, replica_noun(scaled))
    return text if scaled == "monolith" else f"{text} of {scaled}"


def scaling_invalid(rows: pd.DataFrame) -> tuple[str, ...]:
    """The anchors of the invalid steps among ``rows`` (of ``scaling``)."""
    bad = rows[~rows["valid"].astype(bool)]
    return tuple(scaling_anchor(str(r["topology"]), str(r["mix"]), int(r["replicas"])) for _, r in bad.iterrows())


def peak_text(model: pd.Series | None, noun: str) -> str:
    """Where the fitted model peaks, said as a model's figure."""
    if model is None or str(model["kind"]) == "none":
        return "too few points for a model"
    peak = float(model["peak_n"])
    if math.isinf(peak):
        return "the model does not peak (κ = 0)"
    rate = usl.model_of(model).predict(peak)
    return f"the model peaks at {num(peak)} {noun}s ({num(rate)} req/s)"


def scaling_fill(mix: str) -> Fill:
    """Per topology, in ``mix``: throughput from the fewest to the most replicas measured, per added replica, and
    where the fitted model peaks."""

    def fill(ctx: Context) -> dict[str, Cell]:
        models = scaling_model(ctx)
        out = {}
        for topology in ctx.topologies:
            rows = scaling_rows(ctx, topology, mix)
            if len(rows):
                out[topology] = scaling_cell(rows, model_row(models, topology, mix))
        return out

    return fill


def scaling_cell(rows: pd.DataFrame, model: pd.Series | None) -> Cell:
    measured = rows[rows["sustainable_rps"].notna()]
    if measured.empty:
        return Cell(None, "no rate met the SLO at any replica count", scaling_invalid(rows))
    first, last = measured.iloc[0], measured.iloc[-1]
    ends = measured.iloc[[0, -1]]
    low, high = float(first["sustainable_rps"]), float(last["sustainable_rps"])
    n_low, n_high = int(first["replicas"]), int(last["replicas"])
    scaled = str(last["scaled"])
    at = replicas_text(n_high, scaled)
    shared = "; the load generator shared the SUT's CPUs" if ends["generator_shares_cpu"].astype(bool).any() else ""
    if n_high == n_low:
        return Cell(None, f"{low:,.0f} req/s at {at} (one step){shared}", scaling_invalid(ends))
    per = (high - low) / (n_high - n_low)
    start = f"{low:,.0f}" if n_low == 1 else f"{low:,.0f} req/s at {n_low}"
    text = (
        f"{charts.signed(per)} req/s per added {replica_noun(scaled)}: {start} → {high:,.0f} req/s at {at} "
        f"({ratio_text(high / low)}); {peak_text(model, replica_noun(scaled))}{shared}"
    )
    return Cell(per, text, scaling_invalid(ends))


def restart_order(ctx: Context) -> list[pd.Series]:
    """The rows of ``deployment`` in the order of :data:`RESTART_SCENARIOS` (then any other scenario)."""
    table = ctx.table("deployment")
    rank = {s: i for i, s in enumerate(RESTART_SCENARIOS)}
    return sorted((r for _, r in table.iterrows()), key=lambda r: (rank.get(str(r["scenario"]), len(rank)), r.name))


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


def restart_cell(row: pd.Series) -> Cell:
    errors = int(row["errors_during"])
    rate = f" ({float(row['error_rate_during']):.2%})" if errors else ""
    text = f"{errors:,} errors{rate} restarting {restarted_text(row)}; {steady_text(float(row['time_to_steady_s']))}"
    invalid = () if bool(row["valid"]) else (deployment_anchor(str(row["scenario"])),)
    return Cell(float(errors), text, invalid)


def _not_yet(experiment: str) -> str:
    return f"archbench run --experiments {experiment}"


#: The verdict table, row by row, in the order of the classic comparison.
VERDICT: Final[list[Metric]] = [
    Metric(
        "Codebase",
        "lines of code per deployable unit, shared vs not shared",
        ("codebase",),
        "archbench run (any experiment)",
        codebase_fill,
        ratio=False,
    ),
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
    Metric(
        "Scaling",
        "sustainable throughput on the same CPUs (p99 within the SLO, errors under budget)",
        ("steps",),
        NETWORK,
        sustainable,
        headline=True,
    ),
    *(
        Metric(
            "Scaling",
            f"throughput per added replica / worker, scaling only what saturates ({mix} mix)",
            ("scaling",),
            SCALING,
            scaling_fill(mix),
        )
        for mix in SCALING_MIXES
    ),
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
        "time to recover after the fault ends, in whole seconds (worst fault)",
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
    Metric("Complexity", "processes to run", ("resources",), NETWORK, process_count),
    Metric("Complexity", "databases", ("steps",), NETWORK, database_count),
    Metric("Complexity", "memory: peak RSS of all processes (highest step)", ("steps",), NETWORK, peak_memory),
    Metric(
        "Complexity",
        "to deploy it: listening ports, configuration entries, deployment-file lines (compose + Kubernetes)",
        ("complexity",),
        "archbench run (from the files in deploy/)",
        complexity_fill,
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
        "anomalies the audit found after the faults (must be 0)",
        ("consistency",),
        FAILURE,
        anomalies_found,
        headline=True,
        ratio=False,
    ),
    Metric(
        "Data consistency",
        "from the end of the load until every invariant held (worst fault)",
        ("consistency",),
        FAILURE,
        convergence_worst,
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
        "cost of the access checks (API key at the edge, credentials inside): CPU per request, on vs off",
        ("security",),
        _not_yet("security"),
        security_fill,
        ratio=False,
    ),
    Metric(
        "Stability over time",
        "RSS and open descriptors growth under a long run (goal < 10%)",
        ("soak_summary",),
        _not_yet("soak"),
        soak_fill,
        ratio=False,
    ),
]


def verdict_cell(cell: Cell | None, baseline: Cell | None, is_baseline: bool, ratio: bool = True) -> str:
    if cell is None:
        return '<span class="nm">not in this run</span>'
    parts = [f'<span class="v">{esc(cell.text)}</span>', alarm(cell.alarm)]
    if is_baseline and ratio:
        parts.append('<span class="r">baseline</span>')
    elif (
        ratio
        and baseline is not None
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
            rest = "".join(
                f"<td{' class=alarm-cell' if t in cells and cells[t].alarm else ''}>"
                f"{verdict_cell(cells.get(t), baseline, t == 'monolith', metric.ratio)}</td>"
                for t in ctx.topologies
            )
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
            f"{esc(t)} <b>{esc(cells[t].text)}</b>{alarm(cells[t].alarm)}{flag(cells[t].invalid)}"
            for t in ctx.topologies
            if t in cells
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


# -- scaling ---------------------------------------------------------------------------------------------------------

#: The model is drawn out to this many times the most replicas measured, and at least to MODEL_MIN_REPLICAS.
MODEL_REACH: Final = 4.0
MODEL_MIN_REPLICAS: Final = 8.0


def model_curve(model: pd.Series | None, reach: float) -> list[tuple[float, float]]:
    """The fitted model from 1 replica to ``reach`` (nothing without a model)."""
    if model is None or str(model["kind"]) == "none":
        return []
    grid = np.linspace(1.0, reach, 64)
    return list(zip(grid.tolist(), usl.model_of(model).predict(grid).tolist(), strict=True))


def scaling_points(rows: pd.DataFrame, column: str, scale: float = 1.0) -> list[charts.ReplicaPoint]:
    return [
        charts.ReplicaPoint(float(r["replicas"]), float(r[column]) / scale, bool(r["valid"]))
        for _, r in rows.iterrows()
    ]


def throughput_panels(ctx: Context, models: pd.DataFrame) -> list[tuple[str, list[charts.ReplicaLine]]]:
    scaling = ctx.table("scaling")
    reach = max(MODEL_MIN_REPLICAS, MODEL_REACH * float(scaling["replicas"].max()))
    panels = []
    for mix in scaling_mixes(ctx):
        lines = [
            charts.ReplicaLine(
                topology,
                scaling_points(scaling_rows(ctx, topology, mix), "sustainable_rps"),
                model_curve(model_row(models, topology, mix), reach),
            )
            for topology in scaling_topologies(ctx)
            if len(scaling_rows(ctx, topology, mix))
        ]
        panels.append((f"{mix} mix", lines))
    return panels


def memory_lines(ctx: Context, column: str) -> list[charts.ReplicaLine]:
    """Per topology, ``column`` (bytes) against replicas, the higher of the mixes at each replica count."""
    scaling, lines = ctx.table("scaling"), []
    for topology in scaling_topologies(ctx):
        mine = scaling[scaling["topology"] == topology]
        per = mine.groupby("replicas").agg(value=(column, "max"), valid=("valid", "all")).reset_index()
        lines.append(charts.ReplicaLine(topology, scaling_points(per, "value", MIB)))
    return lines


def section_scaling(ctx: Context) -> str:
    models = scaling_model(ctx)
    svg = charts.svg_of(
        charts.replicas_chart(throughput_panels(ctx, models), "sustainable throughput (req/s)", "replicas / workers"),
        "scaling",
        "sustainable throughput against replicas, measured and modelled",
    )
    caption = (
        "Each marker is a measured step: the highest offered rate whose p99 met the SLO with errors under budget, "
        "with k workers of the monolith, or k replicas of the microservice that saturated first (the other services "
        "once), on k CPU cores. The dashed lines are the Universal Scalability Law fitted to those steps and drawn "
        f"beyond them (shaded): <b>{esc(charts.MODEL_LABEL)}</b>; its coefficients are in the table below. Hollow "
        "markers are steps whose deciding runs were invalid. Replicas share their component's database: the "
        "monolith's workers one SQLite file for everything, a service's replicas its own file. SQLite lets one "
        "writer in at a time and a waiting writer sleeps in steps of milliseconds, so a write-heavy mix gains less "
        "from more processes on one file than a read-heavy one; a client-server database would move that limit."
    )
    memory = charts.svg_of(
        charts.replicas_chart(
            [
                ("all processes of the system under test (peak RSS)", memory_lines(ctx, "rss_total_bytes")),
                ("per replica of the scaled component (mean peak RSS)", memory_lines(ctx, "rss_per_replica_bytes")),
            ],
            "MiB",
            "replicas / workers",
        ),
        "scaling-memory",
        "memory against replicas",
    )
    return (
        generator_note(ctx)
        + figure(svg, caption)
        + "<h3>The model, fitted to the measured steps</h3>"
        + model_table(ctx, models)
        + '<h3 id="scaling-steps">CPU and memory at each step</h3>'
        + figure(memory, "Peak resident memory against replicas: the higher of the two mixes at each step.")
        + scaling_table(ctx)
        + "<h3>Which process saturates</h3>"
        + saturation_table(ctx)
    )


def generator_note(ctx: Context) -> str:
    shared = ctx.table("scaling")["generator_shares_cpu"].astype(bool)
    if not shared.any():
        return ""
    return (
        f'<p class="banner">In {shared.sum()} of {len(shared)} steps the load generator ran on one of the cores '
        "given to the system under test (a small machine has no spare core): those steps measured the system and "
        "the generator competing for the same CPU, so their throughput is a lower bound.</p>"
    )


def coefficient(value: float) -> str:
    """A model coefficient: three significant digits, however small (κ is often under 0.001)."""
    if not math.isfinite(value):
        return "—"
    return "0" if value == 0 else f"{value:.3g}"


def rounded(value: float) -> str:
    """A figure in whole units (an RMSE of 2e-12 req/s is 0 req/s)."""
    return f"{value:,.0f}" if math.isfinite(value) else "—"


def model_table(ctx: Context, models: pd.DataFrame) -> str:
    header = ["topology", "mix", "model", "λ req/s", "σ", "κ", "points", "peak", "RMSE req/s", "note"]
    rows = []
    for topology in scaling_topologies(ctx):
        for mix in scaling_mixes(ctx):
            model, steps = model_row(models, topology, mix), scaling_rows(ctx, topology, mix)
            if model is None or steps.empty:
                continue
            noun = replica_noun(str(steps["scaled"].iloc[-1]))
            rows.append(
                [
                    topo_head(topology),
                    esc(mix),
                    esc(model["kind"]),
                    num(float(model["lambda_rps"])),
                    coefficient(float(model["sigma"])),
                    coefficient(float(model["kappa"])),
                    str(int(model["points"])),
                    esc(peak_text(model, noun).removeprefix("the model ")),
                    rounded(float(model["rmse_rps"])),
                    esc(model["note"]),
                ]
            )
    note = (
        "<p class=note>X(N) = λN / (1 + σ(N − 1) + κN(N − 1)): λ is the throughput of one replica, σ the share of "
        "the work that does not parallelise (contention), κ the cost of keeping replicas coherent (crosstalk), which "
        "makes throughput peak at √((1 − σ)/κ) replicas and then fall. <i>usl</i>: σ and κ fitted (3 points or "
        "more); <i>amdahl</i>: two points, κ fixed at 0; <i>none</i>: fewer. Fitted by least squares with σ, κ ≥ 0; "
        "with as many points as coefficients the fit is exact and says nothing about its own error. With two "
        "points the curve is set by one ratio and cannot bend down: it is a what-if drawn from that ratio, not a "
        "forecast; a machine with more cores (<code>--scale-to N</code>) gives the points that show where scaling "
        "stops.</p>"
    )
    return html_table(header, rows, left=2, text=(2, 7, 9)) + note


def scaling_table(ctx: Context) -> str:
    header = [
        "topology",
        "mix",
        "replicas",
        "CPUs",
        "scaled",
        "sustainable req/s",
        "CPU µs/request",
        "processes",
        "RSS, all MiB",
        "RSS per replica MiB",
        "generator on SUT CPUs",
        "valid",
        "note",
    ]
    rows, attrs = [], []
    for topology in scaling_topologies(ctx):
        for mix in scaling_mixes(ctx):
            for _, r in scaling_rows(ctx, topology, mix).iterrows():
                valid, rate = bool(r["valid"]), float(r["sustainable_rps"])
                rows.append(
                    [
                        topo_head(topology),
                        esc(mix),
                        str(int(r["replicas"])),
                        str(int(r["cpus"])),
                        esc(r["scaled"]),
                        num(rate) if math.isfinite(rate) else '<span class="nm">no rate met the SLO</span>',
                        num(float(r["cpu_per_request_us"])),
                        str(int(r["processes"])),
                        num(float(r["rss_total_bytes"]) / MIB),
                        num(float(r["rss_per_replica_bytes"]) / MIB),
                        "yes" if bool(r["generator_shares_cpu"]) else "no",
                        "yes" if valid else '<span class="flag">INVALID</span>',
                        f'<div class="desc">{esc(r.get("note", "") or "")}</div>',
                    ]
                )
                anchor = scaling_anchor(topology, mix, int(r["replicas"]))
                attrs.append(f' id="{anchor}"' + ("" if valid else ' class="invalid"'))
    note = (
        "<p class=note>CPU per request: CPU seconds of every process of the system under test at the highest rate "
        "that met the SLO, over its successful requests. RSS: peak resident memory at that rate, of every process "
        "and, per replica, the mean of the scaled component's processes.</p>"
    )
    return html_table(header, rows, left=2, text=(4, len(header) - 1), row_attrs=attrs, css="wide") + note


def saturation_table(ctx: Context) -> str:
    processes = ctx.table("scaling_processes")
    if processes.empty:
        return f'<p class="nm">Per-process CPU not in this run: <code>{esc(SCALING)}</code></p>'
    found = [str(c) for c in processes["component"].unique()]
    components = [c for c in COMPONENT_ORDER if c in found] + sorted(set(found) - set(COMPONENT_ORDER))
    header = ["topology", "mix", "replicas", "busiest process", *map(esc, components)]
    rows = []
    for topology in scaling_topologies(ctx):
        for mix in scaling_mixes(ctx):
            mine = processes[(processes["topology"] == topology) & (processes["mix"] == mix)]
            for replicas, step in mine.groupby("replicas", sort=True):
                rows.append([topo_head(topology), esc(mix), str(replicas), *saturation_cells(step, components)])
    note = (
        "<p class=note>Share of the system's CPU seconds at the highest rate that met the SLO, per component (the "
        "number of its processes in brackets when more than one). The busiest process is the one that saturates "
        "first: the one worth scaling.</p>"
    )
    return html_table(header, rows, left=2, text=(3,)) + note


def saturation_cells(step: pd.DataFrame, components: Sequence[str]) -> list[str]:
    busiest = step.sort_values("cpu_share", kind="stable").iloc[-1]
    cells = [f"<b>{esc(busiest['process'])}</b> {float(busiest['cpu_share']):.0%}"]
    for component in components:
        mine = step[step["component"] == component]
        count = f" ({len(mine)})" if len(mine) > 1 else ""
        cells.append(f"{float(mine['cpu_share'].sum()):.0%}{count}" if len(mine) else "—")
    return cells


# -- failure impact --------------------------------------------------------------------------------------------------


def failure_ops(ctx: Context) -> list[str]:
    """The operations of the mix, in the order the experiment wrote them."""
    return [
        str(c).removeprefix("availability_")
        for c in ctx.table("failure_impact").columns
        if str(c).startswith("availability_")
    ]


def fault_runs(ctx: Context, table: str) -> list[tuple[str, str, pd.Series]]:
    """(fault, topology, row) of ``table``, fault by fault in the matrix's order, topologies side by side."""
    frame = ctx.table(table)
    out = []
    for fault in ctx.faults():
        for topology in ctx.failure_topologies():
            rows = frame[(frame["topology"] == topology) & (frame["fault"] == fault)]
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
            why.append(charts.availability_text(success))
        if slo is not None and p99 > slo:
            why.append(f"p99 {duration_text(p99)}")
        if why:
            out.append(f"{op} {', '.join(why)}")
    return out


def section_failure_heatmap(ctx: Context) -> str:
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
    slo = ctx.failure_slo
    svg = charts.svg_of(
        charts.availability_heatmap(panels, ops, slo), "heatmap", "availability per fault and operation, per topology"
    )
    params = ctx.failure_params
    load = f" at {num(params['rate'])} req/s" if "rate" in params else ""
    window = f" for {num(params['window'])} s" if "window" in params else ""
    caption = (
        f"Each fault was applied{window} under a steady open-loop mix{load}, one fault after the other on one "
        "deployment per topology. A cell is the share of that operation's requests, sent while the fault was on, "
        "that succeeded (rounded down); the colour bands are the same in every panel. An outlined cell also broke "
        f"the p99 SLO. An operation under {HEALTHY_SUCCESS:.0%} or over the SLO counts in the fault's blast radius "
        "(next sections). In the monolith a process fault (kill, pause) hits the one process, a dependency fault "
        "(latency, error, hang) the module the service would hold. A red cross marks a fault whose load run missed "
        'its schedule (invalid): see its row in the <a href="#recovery">recovery table</a>.'
    )
    return figure(svg, caption)


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


def section_failure_timeline(ctx: Context) -> str:
    timeline, rows = ctx.table("failure_timeline"), []
    for fault in ctx.faults():
        mix, checkout = [], []
        for topology in ctx.failure_topologies():
            mine = timeline[(timeline["topology"] == topology) & (timeline["fault"] == fault)]
            if mine.empty:
                continue
            valid = not ctx.fault_invalid(topology, fault)
            mix.append(mix_series(mine, topology, valid))
            checkout.append(op_series(mine, topology, "checkout", valid))
        if mix:
            rows.append(charts.TimelineRow(ctx.fault_label(fault), ctx.fault_window(), mix, checkout))
    svg = charts.svg_of(charts.timeline_chart(rows, ctx.failure_slo), "timeline", "per-second timelines of each fault")
    caption = (
        "Each point is one whole second of the load (requests counted by their intended send time, warm-up "
        "excluded); the shaded band is the fault window. Whole mix: successes over requests of every operation, and "
        "the highest p99 of any operation in that second. A second with few requests (the first, cut by the warm-up; "
        "the last) is noisier. Dashed: an invalid load run."
    )
    return figure(svg, caption)


def section_recovery(ctx: Context) -> str:
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
    rows, attrs = [], []
    for fault, topology, run in fault_runs(ctx, "failure_impact"):
        invalid = ctx.fault_invalid(topology, fault)
        hurt = hurt_ops(ctx, run)
        rows.append(
            [
                esc(ctx.fault_label(fault)),
                topo_head(topology),
                f"{float(run['blast_radius']):.0%}" if "blast_radius" in run else "—",
                ", ".join(map(nowrap, hurt)) if hurt else '<span class="nm">none</span>',
                nowrap(detect_text(float(run.get("time_to_detect", math.nan)))),
                nowrap(recover_text(float(run.get("time_to_recover", math.nan)))),
                nowrap(duration_text(float(run.get("restart_seconds", math.nan)))),
                '<span class="flag">INVALID</span>' if invalid else "yes",
                f'<div class="why">{esc(run.get("load_invalid_reasons", "") or "")}</div>',
            ]
        )
        attrs.append(f' id="{fault_anchor(topology, fault)}"' + (' class="invalid"' if invalid else ""))
    slo = ctx.failure_slo
    slo_text = f"p99 over {num(slo * 1e3)} ms" if slo is not None else "p99 over the SLO"
    caption = (
        "<p class=note><i>Blast radius</i>: the share of the operation mix, by weight, whose success ratio fell under "
        f"{HEALTHY_SUCCESS:.0%} or whose {slo_text} during the fault window. <i>Time to detect</i>: when, after the "
        "fault began, the first second with an operation under those thresholds started (seconds are whole seconds "
        "of the load, so this is a span). <i>Time to recover</i>: from the end of the fault to the end of the last "
        "such second (an upper bound; 0 s: no unhealthy second after the fault ended). <i>Restart</i>: for a kill, "
        "from the supervisor's restart until the process was ready again.</p>"
    )
    return html_table(header, rows, left=2, text=(3, len(header) - 1), row_attrs=attrs, css="wide") + caption


def section_consistency(ctx: Context) -> str:
    audits = ctx.table("consistency")
    columns = anomaly_columns(audits)
    runs = fault_runs(ctx, "consistency")
    failed = [(f, t) for f, t, r in runs if not bool(r.get("consistent", False))]
    settle = ctx.failure_params.get("settle_timeout")
    if failed:
        where = ", ".join(f'<a href="#{audit_anchor(t, f)}">{esc(t)} after {esc(f)}</a>' for f, t in failed)
        summary = (
            f'<div class="alarm-box"><b>⚠ The audit found anomalies after {len(failed)} of '
            f"{plural(len(runs), 'fault run')}</b>"
            f": {where}. Any anomaly is a bug in the shop, not a figure to report: the audit exists to prove there are "
            "none.</div>"
        )
    else:
        windows = [float(r.get("convergence_seconds", math.nan)) for _, _, r in runs]
        worst = max((w for w in windows if math.isfinite(w)), default=math.nan)
        settled = f"; the slowest settled {duration_text(worst)} after the load ended" if math.isfinite(worst) else ""
        summary = (
            f'<ul class="glance"><li>Every invariant held after all {len(runs)} fault runs, on every topology'
            f"{esc(settled)}.</li></ul>"
        )
    header = [
        "fault",
        "topology",
        "audit",
        "anomalies per invariant",
        "consistent after",
        "confirmed",
        "rejected",
        "pending",
    ]
    rows, attrs = [], []
    for fault, topology, run in runs:
        ok = bool(run.get("consistent", False))
        broken = [f"{c.removeprefix('anomalies_')}: {int(run[c])}" for c in columns if int(run[c])]
        if ok:
            audit, anomalies = "consistent", '<span class="nm">none</span>'
            after = esc(duration_text(float(run.get("convergence_seconds", math.nan))))
        else:
            audit = '<span class="alarm">⚠ ANOMALIES</span>'
            anomalies = f'<b class="bad">{esc("; ".join(broken) or "the audit failed")}</b>'
            after = f"never{f' (within {num(float(settle))} s)' if settle is not None else ''}"
        counts = [
            f"{int(run[c]):,}" if c in run and pd.notna(run[c]) else "—"
            for c in ("orders_confirmed", "orders_rejected", "orders_pending")
        ]
        rows.append([esc(ctx.fault_label(fault)), topo_head(topology), audit, anomalies, after, *counts])
        attrs.append(f' id="{audit_anchor(topology, fault)}"' + ("" if ok else ' class="anomaly"'))
    caption = (
        "<p class=note>After each fault the load stops and the audit reads every database directly, again and again "
        "until every invariant holds"
        f"{f' or {num(float(settle))} s have passed' if settle is not None else ''}. <i>Consistent after</i>: from "
        "the end of the load until the audit first passed, the eventual-consistency window; orders still in flight "
        "when the load stops are legitimately pending, so the audit cannot pass earlier. A window of a few "
        "milliseconds means the first audit already passed (the figure is then that audit's own duration). Orders: "
        "as counted by the last audit, over the whole run so far.</p>"
    )
    return (
        summary
        + html_table(header, rows, left=2, text=(2, 3), row_attrs=attrs, css="wide")
        + caption
        + invariant_table(ctx, columns)
    )


def invariant_table(ctx: Context, columns: list[str]) -> str:
    audits, topologies = ctx.table("consistency"), ctx.failure_topologies()
    header = ["invariant", "what it checks", *(topo_head(t) for t in topologies)]
    rows, attrs = [], []
    for column in columns:
        name = column.removeprefix("anomalies_")
        cells = []
        bad = False
        for topology in topologies:
            mine = audits.loc[audits["topology"] == topology, column]
            count = int(mine.sum())
            bad = bad or count > 0
            cells.append(f'<span class="alarm">{count:,}</span>' if count else f"0 in {len(mine)}")
        rows.append([f"<code>{esc(name)}</code>", esc(INVARIANTS.get(name, name.replace("_", " "))), *cells])
        attrs.append(' class="anomaly"' if bad else "")
    return "<h3>Anomalies per invariant, over every audit</h3>" + html_table(header, rows, left=2, row_attrs=attrs)


# -- deployment ------------------------------------------------------------------------------------------------------


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


def section_deployment(ctx: Context) -> str:
    rows = restart_order(ctx)
    chart = f'<p class="nm">No bin-by-bin timeline in this run: <code>{esc(DEPLOYMENT)}</code></p>'
    if ctx.has("deployment_timeline"):
        timelines = [restart_timeline(ctx, row) for row in rows]
        svg = charts.svg_of(charts.restart_chart(timelines), "restart", "latency and errors during each restart")
        caption = (
            "Each scenario restarts one part under a steady open-loop load; each bin is 0.5 s of requests, counted by "
            "their intended send time. Vertical lines: the harness's events (a stop signal, a replica ready again). "
            "Shaded: from the restart's start to steady state, the end of the last disturbed bin (a bin with a "
            "failed request, or with its p90 above the dotted line: twice the p99 before the restart, or 5 ms more "
            "if that is higher; the p90, so that one slow request in a bin, which happens without a restart too, "
            "does not count). A restart is graceful: uvicorn stops accepting, finishes the requests in flight and "
            "closes idle keep-alive connections before it exits."
        )
        chart = figure(svg, caption)
    return chart + '<h3 id="deployment-runs">Each restart</h3>' + deployment_table(rows)


def deployment_table(rows: Sequence[pd.Series]) -> str:
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
    body, attrs = [], []
    for row in rows:
        valid = bool(row["valid"])
        body.append(
            [
                f'<b>{esc(row["scenario"])}</b><div class="desc">{esc(row["description"])}</div>',
                topo_head(str(row["topology"])),
                num(float(row["rate"])),
                f"{int(row['requests']):,}",
                f"{int(row['errors_during']):,} ({float(row['error_rate_during']):.2%})",
                ms(float(row["p99_before"])),
                ms(float(row["p99_during"])),
                ms(float(row["max_during"])),
                nowrap(duration_text(float(row["restart_seconds"]))),
                nowrap(steady_text(float(row["time_to_steady_s"])).removeprefix("steady after ")),
                "yes" if valid else '<span class="flag">INVALID</span>',
                f'<div class="desc">{esc(row.get("invalid_reasons", "") or "")}</div>',
            ]
        )
        attrs.append(f' id="{deployment_anchor(str(row["scenario"]))}"' + ("" if valid else ' class="invalid"'))
    note = (
        "<p class=note><i>During</i>: from the first stop signal until steady state. <i>Restart</i>: from the first "
        "stop signal until the last restarted replica was ready again. <i>To steady state</i>: until the end of the "
        "last disturbed bin.</p>"
    )
    return html_table(header, body, left=2, text=(len(header) - 1,), row_attrs=attrs, css="wide") + note


# -- operational complexity ------------------------------------------------------------------------------------------

#: The columns of the ``complexity`` table, in the reader's words.
COMPLEXITY_COLUMNS: Final = (
    ("processes", "processes (compose services)"),
    ("replicas", "pods the Kubernetes Deployments ask for"),
    ("listening_ports", "listening ports (container ports)"),
    ("exposed_ports", "ports exposed outside the cluster"),
    ("databases", "databases (volume claims, one SQLite file each)"),
    ("volumes", "compose volumes"),
    ("config_entries", "configuration entries (ConfigMap and Secret keys, container env)"),
    ("env_vars", "environment variables (compose)"),
    ("compose_lines", "compose file lines"),
    ("k8s_lines", "Kubernetes manifest lines"),
    ("k8s_objects", "Kubernetes objects"),
    # Counted by the kernel from a running deployment (bench.system.complexity.live_counts), when the run has them.
    ("live_processes", "processes running (counted live)"),
    ("live_listening_ports", "ports listening (counted live)"),
    ("live_databases", "databases held open (counted live)"),
    ("live_connections", "TCP connections between its processes (counted live)"),
)


def section_complexity(ctx: Context) -> str:
    table = ctx.table("complexity")
    topologies = [t for t in ctx.topologies if t in set(table["topology"])]
    topologies += [str(t) for t in table["topology"] if str(t) not in topologies]
    header = ["to run and configure", *(topo_head(t) for t in topologies)]
    rows = []
    for column, label in COMPLEXITY_COLUMNS:
        if column not in table:
            continue
        values = [table.loc[table["topology"] == t, column].dropna() for t in topologies]
        rows.append([esc(label), *(f"{int(v.iloc[0]):,}" if len(v) else "—" for v in values)])
    note = (
        "<p class=note>Counted from the deployment files in <code>deploy/</code> (compose and Kubernetes), and, "
        "where marked, from a running deployment. Lines are non-blank, non-comment lines. Colocated is a local-only "
        "topology with no deployment files of its own.</p>"
    )
    return html_table(header, rows) + note


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
        f"{experiment_methods(ctx)}</ul>"
    )
    return (
        principles
        + "<h3>Reproduce</h3>"
        + reproduce
        + '<div class="cols"><div><h3>Hardware and software</h3>'
        + kv_table(hardware)
        + failure_parameters(ctx)
        + experiment_parameters(ctx, "scaling")
        + experiment_parameters(ctx, "deployment")
        + "</div>"
        + "<div><h3>Pinning and topologies</h3>"
        + kv_table(pinning)
        + ("<h3>Parameters of the network experiment</h3>" + kv_table(network) if ran(ctx, "network") else "")
        + "</div></div>"
        + '<h3 id="steps">Every run and its validity</h3>'
        + validity_table(ctx)
    )


def ran(ctx: Context, experiment: str) -> bool:
    """Whether this run made ``experiment`` (meta records the parameters of every experiment, run or not)."""
    experiments = ctx.meta.get("parameters", {}).get("experiments")
    return experiments is None or experiment in experiments


#: How the experiments of issue 6 measure, in a sentence each; shown when the run has their tables.
METHODS: Final = (
    (
        "scaling",
        "<li><b>Scaling</b>: step k runs on k CPUs for both topologies: the monolith runs k workers; the "
        "microservices run every service once and k replicas of the one that saturates first (the process that used "
        "the most CPU in step 1). At each step open-loop runs search the highest rate that still meets the SLO. On "
        "a machine with few cores the generator may share a CPU of the budget: such steps are flagged, and their "
        "throughput is a lower bound. The Universal Scalability Law fitted to the steps is drawn beyond them as a "
        "model, never as a measurement.</li>",
    ),
    (
        "deployment",
        "<li><b>Independent deployment</b>: under a steady open-loop load, one part is restarted: the monolith (all "
        "of it, with one worker, or N workers one at a time) or one service (one replica, or two one at a time). A "
        "restart is graceful: uvicorn stops accepting, finishes the requests in flight and closes idle keep-alive "
        "connections; the next replica stops only once the previous one is ready again. Failed requests and "
        "latency are counted in 0.5 s bins.</li>",
    ),
)


def experiment_methods(ctx: Context) -> str:
    return "".join(text for table, text in METHODS if ctx.has(table))


def experiment_parameters(ctx: Context, experiment: str) -> str:
    """The parameters meta records for ``experiment``, when this run made it."""
    params = ctx.meta.get("parameters", {}).get(experiment)
    if not isinstance(params, dict) or not params or not ran(ctx, experiment):
        return ""
    pairs = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in params.items()]
    return f"<h3>Parameters of the {esc(experiment)} experiment</h3>" + kv_table(pairs)


def failure_parameters(ctx: Context) -> str:
    params = ctx.failure_params
    if not params or not ran(ctx, "failure"):
        return ""
    faults = ", ".join(ctx.fault_label(f"{p.get('kind')}:{p.get('target')}") for p in params.get("faults", []))
    pairs = [(k, v) for k, v in params.items() if k != "faults"]
    return "<h3>Parameters of the failure experiment</h3>" + kv_table([*pairs, ("faults", faults)])


def validity_table(ctx: Context) -> str:
    steps = ctx.table("steps")
    if steps.empty:
        return '<p class="nm">No network-experiment run in this results directory.</p>'
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
    Section(
        "scaling",
        "Scaling: throughput against replicas, measured and modelled",
        section_scaling,
        ("scaling",),
        SCALING,
    ),
    Section(
        "failure-heatmap",
        "Failure impact: availability per fault and operation",
        section_failure_heatmap,
        ("failure_impact",),
        FAILURE,
    ),
    Section(
        "failure-timeline", "Failure impact, second by second", section_failure_timeline, ("failure_timeline",), FAILURE
    ),
    Section("recovery", "Blast radius and recovery", section_recovery, ("failure_impact",), FAILURE),
    Section("consistency", "Data consistency after each fault", section_consistency, ("consistency",), FAILURE),
    Section(
        "deployment",
        "Independent deployment: restarting one part under load",
        section_deployment,
        ("deployment",),
        DEPLOYMENT,
    ),
    Section(
        "complexity",
        "Operational complexity: what there is to run and configure",
        section_complexity,
        ("complexity",),
        "archbench run (from the files in deploy/)",
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
.nw{white-space:nowrap}
.why{min-width:300px}
.desc{min-width:220px;white-space:normal;font-size:11.5px;color:#555}
table.wide{font-size:12px}
table.verdict{width:100%;table-layout:fixed}
table.verdict thead th:nth-child(1){width:13%}table.verdict thead th:nth-child(2){width:27%}
table.verdict td,table.verdict th{overflow-wrap:anywhere;white-space:normal}
th.aspect{background:#fafbfc}
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
.alarm{display:inline-block;background:#b00020;color:#fff;font-weight:700;font-size:11.5px;padding:1px 6px;
border-radius:3px;white-space:nowrap;text-decoration:none}
a.alarm{color:#fff}
.alarm-box{border:2px solid #b00020;background:#ffe9e9;padding:10px 14px;margin:12px 0;font-size:15px}
td.alarm-cell{background:#ffe9e9}
tr.anomaly td{background:#ffe0e0}
.bad{color:#b00020}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:900px){.cols{grid-template-columns:1fr}nav ol{columns:1}}
@page{size:A4;margin:12mm}
@media print{
body{font-size:10pt}main{max-width:none;padding:0}nav{display:none}
h2{break-after:avoid;margin-top:20px}h3{break-after:avoid}
figure,tr,.glance,.banner,.alarm-box{break-inside:avoid}
.scroll{overflow:visible}table{font-size:8.5pt}a{color:inherit;text-decoration:none}
table.wide{font-size:7pt}table.wide th,table.wide td{padding:2px 3px}
table.wide .flag{white-space:normal}.why{min-width:160px}
.cols{grid-template-columns:1fr 1fr}
}
"""


def banner(ctx: Context) -> str:
    """The warnings at the top of the page: invalid runs, and any anomaly the consistency audit found."""
    return invalid_banner(ctx) + anomaly_banner(ctx)


def invalid_banner(ctx: Context) -> str:
    steps, impact = ctx.table("steps"), ctx.table("failure_impact")
    counts = []
    if not steps.empty:
        invalid = int((~steps["valid"].astype(bool)).sum())
        if invalid:
            counts.append(f'{invalid} of {len(steps)} network runs (<a href="#steps">validity table</a>)')
    if "load_valid" in impact:
        invalid = int((~impact["load_valid"].astype(bool)).sum())
        if invalid:
            counts.append(f'{invalid} of {len(impact)} fault runs (<a href="#recovery">recovery table</a>)')
    for table, what, anchor in (
        ("scaling", "scaling steps", "scaling-steps"),
        ("deployment", "restarts", "deployment-runs"),
    ):
        frame = ctx.table(table)
        invalid = int((~frame["valid"].astype(bool)).sum()) if "valid" in frame else 0
        if invalid:
            counts.append(f'{invalid} of {len(frame)} {what} (<a href="#{anchor}">table</a>)')
    if not counts:
        return ""
    return (
        f'<p class="banner"><b>{" and ".join(counts)} are invalid</b>: requests left later than scheduled (the '
        "generator itself lagged, or every connection was busy with a saturated server), or the achieved rate fell "
        "short, so their latencies are not trustworthy as measured at that rate. Past the knee of a sweep this is "
        'expected. Figures that come from them are marked <span class="flag">⚠ invalid run</span>, with the reasons '
        "in the tables linked; the reasons say which side lagged.</p>"
    )


def anomaly_banner(ctx: Context) -> str:
    failed = failed_audits(ctx.table("consistency"))
    if failed.empty:
        return ""
    first = audit_anchor(str(failed["topology"].iloc[0]), str(failed["fault"].iloc[0]))
    return (
        f'<div class="alarm-box"><b>⚠ The consistency audit found anomalies after {plural(len(failed), "fault run")}'
        f"</b> ({esc(', '.join(dict.fromkeys(map(str, failed['topology']))))}): an invariant of the shop (stock, "
        f'money, orders or notifications) did not hold. <a href="#{first}">See the audit</a>.</div>'
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

"""Data consistency after each fault: the audit of every database, per fault run and per invariant; its verdict rows
are the anomalies found (must be 0) and the time until every invariant held."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.common.names import INVARIANTS
from bench.report.context import Context, Fault, audit_anchor, fault_of
from bench.report.format import duration_text, num
from bench.report.sections.common import FAILURE, topo
from bench.report.sections.failure import fault_runs, topology_fault_rows, worst_fault
from bench.report.view import Cell, Content, Metric, Part, Row, Section, Span, Table, table, text


def anomaly_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if str(c).startswith("anomalies_")]


def failed_audits(rows: pd.DataFrame) -> pd.DataFrame:
    """The audits among ``rows`` (of ``consistency``) that did not end consistent."""
    if "consistent" not in rows:
        return rows.iloc[0:0]
    return rows[~rows["consistent"].astype(bool)]


def audit_anchors(topology: str, rows: pd.DataFrame) -> tuple[str, ...]:
    return tuple(audit_anchor(topology, fault_of(r)) for _, r in rows.iterrows())


def anomalies_found(ctx: Context) -> dict[str, Cell]:
    """Anomalies over every audit of a topology, and which invariants they break: anything but 0 is a bug."""
    out = {}
    for topology in ctx.topologies:
        rows = topology_fault_rows(ctx, "consistency", topology)
        if rows.empty:
            continue
        failed = failed_audits(rows)
        columns = anomaly_columns(rows)
        count = int(rows[columns].to_numpy().sum()) if columns else 0
        if failed.empty and count == 0:
            out[topology] = Cell(0.0, f"none in {len(rows)} audits")
            continue
        broken = [c.removeprefix("anomalies_") for c in columns if int(rows[c].sum())]
        said = f"{count} in {len(failed)} of {len(rows)} audits" + (f": {', '.join(broken)}" if broken else "")
        alarm = audit_anchors(topology, failed) or audit_anchors(topology, rows.iloc[:1])
        out[topology] = Cell(float(count), said, alarm=alarm)
    return out


def convergence_worst(ctx: Context) -> dict[str, Cell]:
    """The longest time from the end of the load until every invariant held; "never" when an audit still failed."""
    out = worst_fault("consistency", "convergence_seconds", duration_text, load_figure=False)(ctx)
    settle = ctx.failure.settle_timeout
    within = f" within the {num(float(settle))} s allowed" if isinstance(settle, int | float) else ""
    for topology in ctx.topologies:
        rows = topology_fault_rows(ctx, "consistency", topology)
        failed = failed_audits(rows)
        if len(failed):
            alarm = audit_anchors(topology, failed)
            out[topology] = Cell(None, f"never{within} ({len(failed)} of {len(rows)} audits)", alarm=alarm)
    return out


@dataclass(frozen=True)
class Failed:
    """An audit that found anomalies: where it is, for the box above the table."""

    topology: str
    fault: str
    anchor: str


@dataclass(frozen=True)
class Consistency:
    runs: int
    failed: tuple[Failed, ...]
    slowest: str
    settle: str
    audits: Table
    invariants: Table


def consistency(ctx: Context) -> Consistency:
    audits = ctx.table("consistency")
    columns = anomaly_columns(audits)
    runs = fault_runs(ctx, "consistency")
    settle_value = ctx.failure.settle_timeout
    settle = num(float(settle_value)) if isinstance(settle_value, int | float) else ""
    failed = tuple(Failed(t, f.label, audit_anchor(t, f)) for f, t, r in runs if not bool(r.get("consistent", False)))
    windows = [float(r.get("convergence_seconds", math.nan)) for _, _, r in runs]
    worst = max((w for w in windows if math.isfinite(w)), default=math.nan)
    header = ["fault", "topology", "audit", "anomalies per invariant", "consistent after"]
    header += ["confirmed", "rejected", "pending"]
    rows = []
    for fault, topology, run in runs:
        rows.append(audit_row(ctx, fault, topology, run, columns, settle))
    return Consistency(
        len(runs),
        failed,
        duration_text(worst) if math.isfinite(worst) else "",
        settle,
        table(header, rows, left=2, text=(2, 3), css="wide"),
        invariant_table(ctx, columns),
    )


def audit_row(ctx: Context, fault: Fault, topology: str, run: pd.Series, columns: list[str], settle: str) -> Row:
    ok = bool(run.get("consistent", False))
    broken = [f"{c.removeprefix('anomalies_')}: {int(run[c])}" for c in columns if int(run[c])]
    if ok:
        audit, anomalies = text("consistent"), (Span("none", "nm"),)
        after = text(duration_text(float(run.get("convergence_seconds", math.nan))))
    else:
        audit = (Span("⚠ ANOMALIES", "alarm"),)
        anomalies = (Span("; ".join(broken) or "the audit failed", "bad"),)
        after = text(f"never{f' (within {settle} s)' if settle else ''}")
    counts = [
        text(f"{int(run[c]):,}" if c in run and pd.notna(run[c]) else "—")
        for c in ("orders_confirmed", "orders_rejected", "orders_pending")
    ]
    cells = (text(ctx.fault_label(fault)), topo(topology), audit, anomalies, after, *counts)
    return Row(cells, audit_anchor(topology, fault), "" if ok else "anomaly")


def invariant_table(ctx: Context, columns: list[str]) -> Table:
    audits, topologies = ctx.table("consistency"), ctx.failure_topologies()
    header: list[Content | str] = ["invariant", "what it checks", *(topo(t) for t in topologies)]
    rows = []
    for column in columns:
        name = column.removeprefix("anomalies_")
        cells = []
        bad = False
        for topology in topologies:
            mine = audits.loc[audits["topology"] == topology, column]
            count = int(mine.sum())
            bad = bad or count > 0
            cells.append((Span(f"{count:,}", "alarm"),) if count else text(f"0 in {len(mine)}"))
        described = INVARIANTS.get(name, name.replace("_", " "))
        rows.append(Row(((Span(name, "code"),), text(described), *cells), css="anomaly" if bad else ""))
    return table(header, rows, left=2)


PART = Part(
    sections=(
        Section(
            "consistency",
            "Data consistency after each fault",
            consistency,
            "consistency.html.j2",
            ("consistency",),
            FAILURE,
        ),
    ),
    metrics=(
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
    ),
)

"""Operational complexity: what there is to run and configure, counted from the deployment files (and a running
deployment, when the run has the live counts); its verdict rows are those counts and the lines of code per
deployable unit."""

from __future__ import annotations

from typing import Final

from bench.report.context import Context
from bench.report.sections.common import ANY, DEPLOY_FILES, topo
from bench.report.view import Cell, Content, Metric, Part, Section, Table, table, text

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


def codebase_fill(ctx: Context) -> dict[str, Cell]:
    """Lines per deployable unit (colocated deploys the microservices' code in one process)."""
    frame = ctx.table("codebase")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        units = frame[frame["topology"] == ("monolith" if topology == "monolith" else "microservices")]
        if units.empty:
            continue
        lines, own = units["lines"], units["own_lines"]
        if len(units) == 1:
            said = f"1 unit, {int(lines.iloc[0]):,} lines ({int(own.iloc[0]):,} its own)"
        else:
            said = (
                f"{len(units)} units, {int(lines.min()):,}–{int(lines.max()):,} lines each "
                f"({int(own.min()):,}–{int(own.max()):,} their own)"
            )
        if topology == "colocated":
            said += ", run as one process"
        out[topology] = Cell(float(lines.sum()), said)
    return out


def complexity_fill(ctx: Context) -> dict[str, Cell]:
    """Counted from the deployment files (colocated has none of its own: it is a local-only topology)."""
    frame = ctx.table("complexity")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        rows = frame[(frame["topology"] == topology) & frame["compose_lines"].notna()]
        if rows.empty:  # no deployment files (colocated), only the counts of its running processes
            continue
        row = rows.iloc[0]
        lines = int(row["compose_lines"]) + int(row["k8s_lines"])
        said = f"{int(row['listening_ports'])} ports, {int(row['config_entries'])} config entries, {lines:,} lines"
        out[topology] = Cell(float(lines), said)
    return out


def complexity(ctx: Context) -> Table:
    frame = ctx.table("complexity")
    topologies = [t for t in ctx.topologies if t in set(frame["topology"])]
    topologies += [str(t) for t in frame["topology"] if str(t) not in topologies]
    header: list[Content | str] = ["to run and configure", *(topo(t) for t in topologies)]
    rows = []
    for column, label in COMPLEXITY_COLUMNS:
        if column not in frame:
            continue
        values = [frame.loc[frame["topology"] == t, column].dropna() for t in topologies]
        rows.append((text(label), *(text(f"{int(v.iloc[0]):,}" if len(v) else "—") for v in values)))
    return table(header, rows)


PART = Part(
    sections=(
        Section(
            "complexity",
            "Operational complexity: what there is to run and configure",
            complexity,
            "complexity.html.j2",
            ("complexity",),
            DEPLOY_FILES,
        ),
    ),
    metrics=(
        Metric(
            "Codebase",
            "lines of code per deployable unit, shared vs not shared",
            ("codebase",),
            ANY,
            codebase_fill,
            ratio=False,
        ),
        Metric(
            "Complexity",
            "to deploy it: listening ports, configuration entries, deployment-file lines (compose + Kubernetes)",
            ("complexity",),
            DEPLOY_FILES,
            complexity_fill,
            rank=1,
        ),
    ),
)

"""``archbench run``: start each topology, run the experiments, stop everything, save the results, summarize."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench import failure, network, security, soak
from bench.codebase import codebase_table
from bench.complexity import complexity_table
from bench.failure import FailureParams
from bench.network import NetworkParams
from bench.resources import pin_self
from bench.results import environment, save
from bench.security import SecurityParams
from bench.soak import SoakParams

EXPERIMENTS = ("network", "failure", "security", "soak")
#: What ``archbench run`` measures unless told otherwise: the soak is long by nature and runs only when asked for.
DEFAULT_EXPERIMENTS = ("network", "failure", "security")


@dataclass(frozen=True)
class RunOptions:
    topologies: Sequence[str]
    experiments: Sequence[str]
    out: Path
    params: NetworkParams
    failure: FailureParams
    security: SecurityParams
    soak: SoakParams
    sut_cpus: frozenset[int] | None
    gen_cpus: frozenset[int] | None
    stack: str
    quick: bool


class PhaseProgress:
    """Moves the bar by what each finished phase was expected to take, and names the phase running now."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar, self.task, self.pending = bar, task, 0.0

    def __call__(self, description: str, expected: float) -> None:
        self.bar.update(self.task, description=description, advance=self.pending)
        self.pending = expected


def run(options: RunOptions, console: Console) -> Path:
    """Run every experiment on every topology; returns the results directory."""
    pin_self(options.gen_cpus)
    started = time.monotonic()
    collected: dict[str, list[pd.DataFrame]] = defaultdict(list)
    planned = (options.params.planned_seconds() + 3.0 if "network" in options.experiments else 0.0) + (
        options.failure.planned_seconds() + 3.0 * len(options.failure.faults)
        if "failure" in options.experiments
        else 0.0
    )
    if "security" in options.experiments:
        planned += options.security.planned_seconds()
    if "soak" in options.experiments:
        planned += options.soak.planned_seconds() + 3.0
    token = secrets.token_hex(16)  # enables the fault endpoints of this run's processes, and only of them
    columns = (
        TextColumn("{task.description:<48}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    # One refresh a second: the bar is drawn by a thread of this process, which also generates the load.
    with Progress(*columns, console=console, transient=False, refresh_per_second=1) as bar:
        task = bar.add_task("starting", total=planned * len(options.topologies))
        for index, topology in enumerate(options.topologies):
            tables: dict[str, pd.DataFrame] = {}
            phases = PhaseProgress(bar, task)
            if "network" in options.experiments:
                tables |= network.run_topology(
                    topology, options.params, options.out / "runs" / topology, options.sut_cpus, options.stack, phases
                )
            if "failure" in options.experiments:
                run_dir = options.out / "runs" / f"{topology}-faults"
                tables |= failure.run_topology(
                    topology, options.failure, run_dir, options.sut_cpus, options.stack, phases, token
                )
            if "security" in options.experiments:
                run_dir = options.out / "runs" / f"{topology}-security"
                steps = tables.get("steps")
                auth_on: dict[str, Any] | None = None
                if steps is not None and security.same_load(options.security, options.params):
                    auth_on = {str(k): v for k, v in steps[steps["phase"] == "low"].iloc[0].items()}
                tables |= security.run_topology(
                    topology, options.security, run_dir, options.sut_cpus, options.stack, phases, auth_on
                )
            if "soak" in options.experiments:
                steps = tables.get("steps")
                known = network.sustainable(steps, options.params).get(topology) if steps is not None else None
                tables |= soak.run_topology(
                    topology,
                    options.soak,
                    options.out / "runs" / f"{topology}-soak",
                    options.sut_cpus,
                    options.stack,
                    phases,
                    sustainable_rate=known,
                )
            for name, frame in tables.items():
                collected[name].append(frame)
            bar.update(task, completed=planned * (index + 1), description=f"{topology}: done")
    frames = {name: pd.concat(parts, ignore_index=True) for name, parts in collected.items()}
    frames["codebase"] = codebase_table()  # static: counted from the sources, no deployment needed
    deploy_files = Path(__file__).resolve().parents[1]
    if (deploy_files / "deploy").is_dir():  # a source checkout: count what it takes to deploy each topology
        frames["complexity"] = complexity_table(deploy_files)
    meta = metadata(options, frames, time.monotonic() - started)
    save(options.out, frames, meta)
    return options.out


def metadata(options: RunOptions, frames: dict[str, pd.DataFrame], seconds: float) -> dict[str, Any]:
    steps = frames.get("steps")
    return {
        "environment": environment(),
        "parameters": {
            "topologies": list(options.topologies),
            "experiments": list(options.experiments),
            "quick": options.quick,
            "stack": options.stack,
            "sut_cpus": sorted(options.sut_cpus) if options.sut_cpus else None,
            "generator_cpus": sorted(options.gen_cpus) if options.gen_cpus else None,
            "network": network.params_dict(options.params),
            "failure": asdict(options.failure),
            "security": asdict(options.security),
            "soak": asdict(options.soak),
        },
        "sustainable_throughput": network.sustainable(steps, options.params) if steps is not None else {},
        "invalid_runs": invalid_runs(frames),
        "wall_seconds": seconds,
    }


def invalid_runs(frames: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Every load run flagged invalid, whatever the experiment."""
    out: list[dict[str, Any]] = []
    if "steps" in frames:
        steps = frames["steps"]
        for row in steps[~steps["valid"].astype(bool)].to_dict(orient="records"):
            keys = ("topology", "phase", "step", "target_rate")
            out.append({"experiment": "network", **{k: row[k] for k in keys}, "reasons": row["invalid_reasons"]})
    if "failure_impact" in frames:
        impact = frames["failure_impact"]
        for row in impact[~impact["load_valid"].astype(bool)].to_dict(orient="records"):
            reasons = row["load_invalid_reasons"]
            out.append(
                {"experiment": "failure", "topology": row["topology"], "fault": row["fault"], "reasons": reasons}
            )
    if "soak_summary" in frames:
        runs = frames["soak_summary"].drop_duplicates("topology")
        for row in runs[~runs["valid"].astype(bool)].to_dict(orient="records"):
            out.append({"experiment": "soak", "topology": row["topology"], "reasons": row["invalid_reasons"]})
    if "security" in frames:
        sec = frames["security"]
        for row in sec[~sec["valid"].astype(bool)].to_dict(orient="records"):
            run = f"auth {'on' if row['auth'] else 'off'}"
            out.append(
                {"experiment": "security", "topology": row["topology"], "run": run, "reasons": row["invalid_reasons"]}
            )
    return out


def summary_tables(frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> list[Table]:
    """The short tables printed at the end of a run, one per experiment that ran."""
    tables = []
    if "steps" in frames:
        tables.append(network_table(frames, meta))
    if "failure_impact" in frames:
        tables.append(failure_table(frames))
    if "soak_summary" in frames:
        tables.append(soak_table(frames))
    return tables


def soak_table(frames: dict[str, pd.DataFrame]) -> Table:
    table = Table(title="archbench: soak (growth from the first sample after warm-up to the last; goal < 10%)")
    for column in ("topology", "process", "req/s", "RSS MB", "RSS growth", "fds", "fds growth"):
        table.add_column(column, justify="left" if column in ("topology", "process") else "right")
    for row in frames["soak_summary"].to_dict(orient="records"):
        table.add_row(
            str(row["topology"]) + ("" if row["valid"] else " (invalid)"),
            str(row["process"]),
            f"{row['target_rate']:g}",
            f"{row['rss_end'] / 2**20:.0f}",
            f"{row['rss_growth']:+.1%}",
            str(row["fds_end"]),
            f"{row['fds_growth']:+.1%}",
        )
    return table


def failure_table(frames: dict[str, pd.DataFrame]) -> Table:
    table = Table(title="archbench: failure impact (during the fault) and consistency (after it)")
    columns = (
        "topology",
        "fault",
        "profile",
        "blast radius",
        "checkout avail.",
        "browse avail.",
        "recover s",
        "consistent after s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("topology", "fault", "profile") else "right")
    audits = {(a["topology"], a["profile"], a["fault"]): a for a in frames["consistency"].to_dict(orient="records")}
    for row in frames["failure_impact"].to_dict(orient="records"):
        audit_row = audits[(row["topology"], row["profile"], row["fault"])]
        consistent = f"{audit_row['convergence_seconds']:.1f}" if audit_row["consistent"] else "ANOMALIES"
        table.add_row(
            str(row["topology"]) + ("" if row["load_valid"] else " (invalid)"),
            str(row["fault"]),
            str(row["profile"]),
            f"{row['blast_radius']:.0%}",
            f"{row.get('availability_checkout', float('nan')):.1%}",
            f"{row.get('availability_browse', float('nan')):.1%}",
            f"{row['time_to_recover']:.0f}",
            consistent,
        )
    return table


def network_table(frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> Table:
    table = Table(title="archbench: network overhead (low load, then sweep)")
    for column in ("topology", "p50 ms", "p99 ms", "checkout p50 ms", "sustainable req/s", "CPU/req us", "peak RSS MB"):
        table.add_column(column, justify="right" if column != "topology" else "left")
    steps, ops = frames["steps"], frames["ops"]
    sustainable = meta["sustainable_throughput"]
    for topology in meta["parameters"]["topologies"]:
        low = steps[(steps["topology"] == topology) & (steps["phase"] == "low")].iloc[0]
        checkout = ops[(ops["topology"] == topology) & (ops["phase"] == "low") & (ops["op"] == "checkout")]
        sweep = steps[(steps["topology"] == topology) & (steps["phase"] == "sweep")]
        rate = sustainable.get(topology)
        flag = "" if bool(low["valid"]) else " (invalid)"
        table.add_row(
            topology + flag,
            f"{low['p50'] * 1e3:.2f}",
            f"{low['p99'] * 1e3:.2f}",
            f"{checkout['p50'].iloc[0] * 1e3:.2f}" if len(checkout) else "-",
            f"{rate:g}" if rate is not None else "none met the SLO",
            f"{low['cpu_per_request_us']:.0f}",
            f"{sweep['peak_rss_bytes'].max() / 2**20:.0f}" if len(sweep) else "-",
        )
    return table

"""``archbench run``: start each topology, run the experiments, stop everything, save the results, summarize."""

from __future__ import annotations

import math
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.experiments import deployment, failure, network, scaling, security, soak
from bench.experiments.deployment import DeploymentParams
from bench.experiments.failure import FailureParams
from bench.experiments.network import NetworkParams
from bench.experiments.scaling import ScalingParams
from bench.experiments.security import SecurityParams
from bench.experiments.soak import SoakParams
from bench.report.results import environment, save
from bench.system.codebase import codebase_table
from bench.system.complexity import complexity_table
from bench.system.resources import pin_self
from bench.system.target import ExternalDeployment, check_experiments

EXPERIMENTS = ("network", "failure", "security", "scaling", "deployment", "soak")
#: What ``archbench run`` measures unless told otherwise: the soak is long by nature and runs only when asked for.
DEFAULT_EXPERIMENTS = ("network", "failure", "security", "scaling", "deployment")
#: Experiments that compare the topologies within themselves: they run once, after the per-topology ones.
WHOLE_RUN = ("scaling", "deployment")


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
    target: ExternalDeployment | None = None  # a system deployed elsewhere: nothing is started (bench.system.target)
    scaling: ScalingParams = field(default_factory=ScalingParams)
    deployment: DeploymentParams = field(default_factory=DeploymentParams)


class PhaseProgress:
    """Moves the bar by what each finished phase was expected to take, and names the phase running now."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar, self.task, self.pending = bar, task, 0.0

    def __call__(self, description: str, expected: float) -> None:
        self.bar.update(self.task, description=description, advance=self.pending)
        self.pending = expected


def run(options: RunOptions, console: Console) -> Path:
    """Run every experiment on every topology (or on the target); returns the results directory."""
    if options.target is not None:
        check_experiments(options.experiments)
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
    sut_cpus = sorted(options.sut_cpus or os.sched_getaffinity(0))
    gen_cpus = sorted(options.gen_cpus or ())
    whole = 0.0
    if "scaling" in options.experiments:
        whole += options.scaling.planned_seconds(sut_cpus, options.topologies)
    if "deployment" in options.experiments:
        whole += options.deployment.planned_seconds()
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
        task = bar.add_task("starting", total=planned * len(options.topologies) + whole)
        for index, topology in enumerate(options.topologies):
            tables: dict[str, pd.DataFrame] = {}
            phases = PhaseProgress(bar, task)
            if "network" in options.experiments:
                run_dir = options.out / "runs" / topology
                found = network.run_topology(
                    topology, options.params, run_dir, options.sut_cpus, options.stack, phases, options.target
                )
                add_tables(tables, found)
            if "failure" in options.experiments:
                run_dir = options.out / "runs" / f"{topology}-faults"
                found = failure.run_topology(
                    topology, options.failure, run_dir, options.sut_cpus, options.stack, phases, token, options.target
                )
                add_tables(tables, found)
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
                found = soak.run_topology(
                    topology,
                    options.soak,
                    options.out / "runs" / f"{topology}-soak",
                    options.sut_cpus,
                    options.stack,
                    phases,
                    sustainable_rate=known,
                    target=options.target,
                )
                add_tables(tables, found)
            for name, frame in tables.items():
                collected[name].append(frame)
            bar.update(task, completed=planned * (index + 1), description=f"{topology}: done")
        phases = PhaseProgress(bar, task)
        runs = options.out / "runs"
        if "scaling" in options.experiments:
            for name, frame in scaling.run_experiment(
                options.topologies, options.scaling, runs, sut_cpus, gen_cpus, options.stack, phases
            ).items():
                collected[name].append(frame)
        if "deployment" in options.experiments:
            for name, frame in deployment.run_experiment(
                options.topologies, options.deployment, runs, options.sut_cpus, options.stack, phases
            ).items():
                collected[name].append(frame)
        bar.update(task, completed=planned * len(options.topologies) + whole, description="done")
    frames = {name: pd.concat(parts, ignore_index=True) for name, parts in collected.items()}
    frames["codebase"] = codebase_table()  # static: counted from the sources, no deployment needed
    deploy_files = Path(__file__).resolve().parents[1]
    if (deploy_files / "deploy").is_dir():  # a source checkout: count what it takes to deploy each topology
        frames["complexity"] = complexity_table(deploy_files)
    if "complexity_live" in frames:  # counted from the running processes by the network experiment
        live = frames.pop("complexity_live")
        files = frames.get("complexity", pd.DataFrame({"topology": pd.Series(dtype=str)}))
        frames["complexity"] = files.merge(live, on="topology", how="outer", sort=False)
    meta = metadata(options, frames, time.monotonic() - started)
    save(options.out, frames, meta)
    return options.out


def add_tables(tables: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> None:
    """Add an experiment's tables to those of the topology; the ``notes`` of every experiment are kept together."""
    if "notes" in tables and "notes" in new:
        new = new | {"notes": pd.concat([tables["notes"], new["notes"]], ignore_index=True)}
    tables |= new


def metadata(options: RunOptions, frames: dict[str, pd.DataFrame], seconds: float) -> dict[str, Any]:
    steps = frames.get("steps")
    return {
        "environment": environment(),
        "parameters": {
            "topologies": list(options.topologies),
            "experiments": list(options.experiments),
            "quick": options.quick,
            "stack": options.stack if options.target is None else None,  # a target's is set where it runs
            "sut_cpus": sorted(options.sut_cpus) if options.sut_cpus else None,
            "generator_cpus": sorted(options.gen_cpus) if options.gen_cpus else None,
            "network": network.params_dict(options.params),
            "failure": asdict(options.failure),
            "security": asdict(options.security),
            "soak": asdict(options.soak),
            "scaling": asdict(options.scaling),
            "deployment": asdict(options.deployment),
            "target": options.target.spec.describe() if options.target is not None else None,
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
    if "scaling_steps" in frames:
        probes = frames["scaling_steps"]
        for row in probes[~probes["valid"].astype(bool)].to_dict(orient="records"):
            run = f"{row['mix']}, {row['replicas']} replicas, {row['target_rate']:g} req/s"
            out.append(
                {"experiment": "scaling", "topology": row["topology"], "run": run, "reasons": row["invalid_reasons"]}
            )
    if "deployment" in frames:
        restarts = frames["deployment"]
        for row in restarts[~restarts["valid"].astype(bool)].to_dict(orient="records"):
            out.append(
                {
                    "experiment": "deployment",
                    "topology": row["topology"],
                    "run": row["scenario"],
                    "reasons": row["invalid_reasons"],
                }
            )
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
    if "scaling" in frames:
        tables.append(scaling_table(frames))
    if "deployment" in frames:
        tables.append(deployment_table(frames))
    if "notes" in frames:
        tables.append(notes_table(frames))
    return tables


def notes_table(frames: dict[str, pd.DataFrame]) -> Table:
    table = Table(title="archbench: not measured on the external target")
    for column in ("topology", "experiment", "subject", "note"):
        table.add_column(column)
    for row in frames["notes"].itertuples(index=False):
        table.add_row(*(str(value) for value in row))
    return table


def scaling_table(frames: dict[str, pd.DataFrame]) -> Table:
    table = Table(title="archbench: scaling (sustainable throughput on k CPUs; the monolith runs k workers, the "
                  "microservices k replicas of the service that saturates first)")  # fmt: skip
    for column in ("mix", "topology", "scaled", "replicas", "req/s", "CPU/req us", "RSS MB", "RSS/replica MB"):
        table.add_column(column, justify="left" if column in ("mix", "topology", "scaled") else "right")
    for row in frames["scaling"].to_dict(orient="records"):
        flags = ("" if row["valid"] else " (invalid)") + (" *" if row["generator_shares_cpu"] else "")
        rate = row["sustainable_rps"]
        table.add_row(
            str(row["mix"]),
            str(row["topology"]) + flags,
            str(row["scaled"]),
            str(row["replicas"]),
            "none met the SLO" if math.isnan(rate) else f"{rate:,.0f}",
            "-" if math.isnan(row["cpu_per_request_us"]) else f"{row['cpu_per_request_us']:.0f}",
            f"{row['rss_total_bytes'] / 2**20:.0f}",
            "-" if math.isnan(row["rss_per_replica_bytes"]) else f"{row['rss_per_replica_bytes'] / 2**20:.0f}",
        )
    if frames["scaling"]["generator_shares_cpu"].any():
        table.caption = "* the generator shared a CPU with the system at this step (too few CPUs on this machine)"
    return table


def deployment_table(frames: dict[str, pd.DataFrame]) -> Table:
    table = Table(title="archbench: independent deployment (a restart under steady load)")
    for column in ("scenario", "topology", "restarted", "errors", "p99 before ms", "p99 during ms", "steady after s"):
        table.add_column(column, justify="left" if column in ("scenario", "topology", "restarted") else "right")
    for row in frames["deployment"].to_dict(orient="records"):
        table.add_row(
            str(row["scenario"]) + ("" if row["valid"] else " (invalid)"),
            str(row["topology"]),
            f"{row['component']} x{row['replicas']}",
            f"{row['errors_during']} ({row['error_rate_during']:.1%})",
            f"{row['p99_before'] * 1e3:.1f}",
            f"{row['p99_during'] * 1e3:.1f}",
            f"{row['time_to_steady_s']:.2f}",
        )
    return table


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
    audited = frames["consistency"].to_dict(orient="records") if "consistency" in frames else []  # none on a target
    audits = {(a["topology"], a["profile"], a["fault"]): a for a in audited}
    for row in frames["failure_impact"].to_dict(orient="records"):
        audit_row = audits.get((row["topology"], row["profile"], row["fault"]))
        if audit_row is None:
            consistent = "not audited"
        else:
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
            "-" if math.isnan(low["cpu_per_request_us"]) else f"{low['cpu_per_request_us']:.0f}",
            f"{sweep['peak_rss_bytes'].max() / 2**20:.0f}" if sweep["peak_rss_bytes"].notna().any() else "-",
        )
    return table

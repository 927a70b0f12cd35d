"""The independent-deployment experiment: what a restart of one part costs users, under the same steady load.

Four scenarios, each on a fresh deployment pinned to the same CPUs, each under the same open-loop load:

* ``rolling``: microservices, one service (inventory by default) with two replicas, restarted one replica at a time:
  graceful stop (the replica stops accepting, finishes its requests in progress, closes idle keep-alive connections;
  its callers' balancer sets it aside on the first refused connect), start, ready, readmitted, then the next;
* ``single``: microservices, the same service with one replica, restarted;
* ``monolith-1``: the monolith with one worker, restarted (the whole system);
* ``monolith-n``: the monolith with N workers sharing the port, restarted one worker at a time (graceful).

Each scenario records every request (errors and latency from the intended send time, so a stall shows), the times of
the stop/start/ready events on the same clock, and derives: errors during the disruption, p99 before and during, the
restart time, and the time to steady state (until the end of the last disturbed 0.5 s bin: one with a failed request,
or with its p90 above max(2 x p99 before, p99 before + 5 ms); the p90, not the p99, so that one slow request among
the 50-100 of a bin, which happens before any restart too, does not make it disturbed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.table import Table

from bench.common import stats
from bench.common.names import DEPLOYMENT, DEPLOYMENT_EVENTS, DEPLOYMENT_TIMELINE, FAILURES, RESTART_SCENARIOS
from bench.experiments.context import RunContext
from bench.experiments.experiment import Experiment, Progress, Tables, rows_where_invalid, summary_table
from bench.load.loadgen import LoadResult, LoadSpec
from bench.load.processes import run_load_sync
from bench.load.workload import SAFE_TO_RETRY, ShopWorkload, StartsOnFirstRequest
from bench.system.deploy import Deployment, deploy
from plumbing.topology import replica_names


@dataclass(frozen=True, kw_only=True)
class DeploymentParams:
    """Rates in requests per second, times in seconds from the start of the load. The seed and the catalog come from
    the run's context."""

    rate: float = 200.0
    duration: float = 8.0
    warmup: float = 0.5
    restart_at: float = 3.0
    service: str = "inventory"
    workers: int = 2  # of the monolith in the "monolith-n" scenario
    readmit: float = 1.0  # pause after a replica is ready before the next one stops (its callers readmit it)
    bin: float = 0.5
    mix: str = "default"
    arrival: str = "poisson"

    def planned_seconds(self) -> float:
        return len(RESTART_SCENARIOS) * (self.warmup + self.duration + 3.0)


QUICK_DEPLOYMENT = DeploymentParams(rate=100.0, duration=6.0, warmup=0.5, restart_at=2.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    topology: str
    component: str
    replicas: int
    description: str

    @property
    def layout_name(self) -> str:
        """The process of the topology's layout that is replicated and restarted."""
        return "monolith" if self.topology == "monolith" else self.component

    def restarted(self) -> list[str]:
        """The processes restarted, in order."""
        return replica_names(self.layout_name, self.replicas)


def scenarios(params: DeploymentParams, topologies: Sequence[str]) -> list[Scenario]:
    service, workers = params.service, params.workers
    every = [
        Scenario(
            "rolling",
            "microservices",
            service,
            2,
            f"{service} runs as 2 replicas, restarted one at a time (graceful stop, start, ready, readmitted)",
        ),
        Scenario("single", "microservices", service, 1, f"{service} runs as 1 replica, restarted (graceful stop)"),
        Scenario("monolith-1", "monolith", "monolith", 1, "the monolith with 1 worker, restarted (graceful stop)"),
        Scenario(
            "monolith-n",
            "monolith",
            "monolith",
            workers,
            f"the monolith with {workers} workers sharing the port, restarted one worker at a time (graceful)",
        ),
    ]
    return [s for s in every if s.topology in topologies]


class Restarter:
    """Restarts the scenario's processes one after the other from ``at`` seconds on the load's clock, on a thread."""

    def __init__(self, deployment: Deployment, processes: Sequence[str], at: float, readmit: float) -> None:
        self.deployment, self.processes, self.at, self.readmit = deployment, list(processes), at, readmit
        self.events: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="archbench-restart", daemon=True)
        self._t0 = math.nan

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def _event(self, what: str) -> None:
        self.events.append((time.monotonic() - self._t0, what))

    def _run(self) -> None:
        supervisor = self.deployment.supervisor
        try:
            time.sleep(max(0.0, self.at - (time.monotonic() - self._t0)))
            for index, name in enumerate(self.processes):
                if index:
                    time.sleep(self.readmit)
                self._event(f"stop {name}")
                supervisor.stop(name)  # SIGTERM: uvicorn drains; SIGKILL only after 5 s
                self._event(f"{name} stopped")
                supervisor.restart(name)  # not running any more: starts it and waits until /readyz says ready
                self._event(f"{name} ready")
        except BaseException as exc:  # surfaced by finish() in the main thread
            self.error = exc

    def finish(self) -> list[tuple[float, str]]:
        if self._thread.ident is not None:  # it was started
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the restart failed: {self.error}") from self.error
        return self.events


def run_scenario(
    context: RunContext, scenario: Scenario, params: DeploymentParams
) -> tuple[LoadResult, list[tuple[float, str]]]:
    seed = context.seed
    with deploy(
        scenario.topology,
        context.runs / f"deployment-{scenario.name}",
        seed=seed,
        cpus=context.sut_cpus,
        stack=context.stack,
        replicas={scenario.layout_name: scenario.replicas},
    ) as deployment:
        workload = ShopWorkload(
            seed.users, seed.products, mix=params.mix, seed=seed.seed, auth_headers=deployment.auth_headers
        )
        restarter = Restarter(deployment, scenario.restarted(), params.restart_at, params.readmit)
        spec = LoadSpec(
            rate=params.rate,
            duration=params.duration,
            warmup=params.warmup,
            arrival=params.arrival,
            seed=seed.seed,
        )
        try:
            result = run_load_sync(deployment.public_url, StartsOnFirstRequest(workload, restarter.start), spec)
        finally:
            events = restarter.finish()
    return result, events


def timeline(frame: pd.DataFrame, width: float) -> pd.DataFrame:
    """Requests, failures (see :data:`FAILURES`), p50, p90 and p99 per ``width`` seconds of intended send time."""
    bins = stats.per_interval(frame, width, frame["error"].astype(str).isin(FAILURES).to_numpy())
    bins.insert(1, "bin", width)
    return bins


def disruption(
    frame: pd.DataFrame, bins: pd.DataFrame, events: Sequence[tuple[float, str]], warmup: float
) -> dict[str, Any]:
    """The figures of one scenario (see the module docstring) from its requests, bins and events."""
    begin = events[0][0] if events else math.nan
    ready = events[-1][0] if events else math.nan
    latency = frame["done"] - frame["intended"]
    before = frame[(frame["intended"] >= warmup) & (frame["intended"] < begin)]
    p50_before = stats.percentile(latency[before.index], 50.0)
    p99_before = stats.percentile(latency[before.index], 99.0)
    limit = stats.disturbed_above(p99_before)
    after_start = bins[bins["t"] + bins["bin"] > begin]
    disturbed = after_start[(after_start["errors"] > 0) | (after_start["p90"] > limit)]
    steady_at = float((disturbed["t"] + disturbed["bin"]).max()) if len(disturbed) else begin
    steady_at = max(steady_at, ready)
    during = frame[(frame["intended"] >= begin) & (frame["intended"] < steady_at)]
    failures = during["error"].astype(str).isin(FAILURES)
    failed = int(failures.sum())
    # Those a retrying client would have absorbed: nothing came back on a reused connection, and the request was
    # safe to send again.
    absorbable = 0
    if "unanswered" in during:  # records of an older generator do not say
        safe = during["op"].astype(str).isin(SAFE_TO_RETRY)
        absorbable = int((failures & during["unanswered"].astype(bool) & safe).sum())
    return {
        "requests": int((frame["intended"] >= warmup).sum()),
        "errors_during": failed,
        "errors_absorbable_by_retry": absorbable,
        "error_rate_during": failed / len(during) if len(during) else 0.0,
        "p50_before": p50_before,
        "p99_before": p99_before,
        "p99_during": stats.percentile(latency[during.index], 99.0),
        "max_during": stats.percentile(latency[during.index], 100.0),
        "restart_seconds": ready - begin,
        "time_to_steady_s": steady_at - begin,
    }


def run(context: RunContext, params: DeploymentParams, progress: Progress) -> dict[str, pd.DataFrame]:
    """Run every scenario whose topology is among the context's; returns the three tables."""
    summary: list[dict[str, Any]] = []
    bins: list[pd.DataFrame] = []
    marks: list[dict[str, Any]] = []
    for scenario in scenarios(params, context.topologies):
        progress(f"deployment: {scenario.name} ({scenario.topology})", params.warmup + params.duration + 3.0)
        result, events = run_scenario(context, scenario, params)
        frame = result.to_frame()
        scenario_bins = timeline(frame, params.bin)
        figures = disruption(frame, scenario_bins, events, params.warmup)
        summary.append(
            {
                "scenario": scenario.name,
                "topology": scenario.topology,
                "component": scenario.component,
                "replicas": scenario.replicas,
                "description": scenario.description,
                "rate": params.rate,
                **figures,
                "valid": result.valid,
                "invalid_reasons": "; ".join(result.invalid_reasons),
            }
        )
        bins.append(scenario_bins.assign(scenario=scenario.name, topology=scenario.topology))
        marks.extend({"scenario": scenario.name, "topology": scenario.topology, "t": t, "event": e} for t, e in events)
    if not summary:
        return {}
    return {
        DEPLOYMENT: pd.DataFrame(summary),
        DEPLOYMENT_TIMELINE: pd.concat(bins, ignore_index=True),
        DEPLOYMENT_EVENTS: pd.DataFrame(marks, columns=["scenario", "topology", "t", "event"]),
    }


def planned_seconds(context: RunContext, params: DeploymentParams) -> float:
    return params.planned_seconds()


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    return [
        {
            "experiment": "deployment",
            "topology": row["topology"],
            "run": row["scenario"],
            "reasons": row["invalid_reasons"],
        }
        for row in rows_where_invalid(tables, DEPLOYMENT)
    ]


def summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    if DEPLOYMENT not in tables:
        return None
    invalid = "; * invalid run" if not tables[DEPLOYMENT]["valid"].all() else ""  # defined only where a row has it
    table = summary_table(
        "archbench: independent deployment (a restart under steady load)",
        caption="errors: failed requests while disturbed (retry: those a retrying client would have absorbed); "
        f"p99 in ms before and during; steady: seconds until the latency is back{invalid}",
    )
    for column in ("scenario", "topology", "restarted", "errors", "retry", "p99", "during", "steady"):
        left = column in ("scenario", "topology", "restarted")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for row in tables[DEPLOYMENT].to_dict(orient="records"):
        table.add_row(
            str(row["scenario"]) + ("" if row["valid"] else " *"),
            str(row["topology"]),
            f"{row['component']} x{row['replicas']}",
            f"{row['errors_during']} ({row['error_rate_during']:.0%})",
            str(row.get("errors_absorbable_by_retry", "-")),
            f"{row['p99_before'] * 1e3:.1f}",
            f"{row['p99_during'] * 1e3:.1f}",
            f"{row['time_to_steady_s']:.2f}",
        )
    return table


EXPERIMENT = Experiment(
    name="deployment",
    help="a restart under steady load: one service (one replica, or two one at a time) and the monolith",
    params=DeploymentParams(),
    quick=QUICK_DEPLOYMENT,
    scope="run",
    options={"restart_service": "service"},
    planned_seconds=planned_seconds,
    run=run,
    invalid_runs=invalid_runs,
    summary=summary,
)

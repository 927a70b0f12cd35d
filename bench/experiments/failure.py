"""The failure-impact experiment: the same faults, under the same steady load, on every topology; then the audit.

For each fault of the matrix: a steady open-loop mix runs for ``before + window + after`` seconds; a timer applies
the fault at ``before`` and lifts it at ``before + window`` (a killed process is restarted then, and its restart is
timed). From the per-request records:

* per second and per operation: throughput, success ratio, p50 and p99, with the fault window marked;
* availability per operation during the window;
* blast radius: the share of the operation mix (by weight) whose success fell under 99% or whose p99 broke the SLO
  during the window;
* time to detect (first unhealthy second after the fault began) and time to recover (from the fault's end to the
  first second after which every second is healthy).

Each row of ``failure_impact`` and ``failure_timeline`` names the fault (``fault``, ``profile``), its kind and the
component it hit (``fault_kind``, ``fault_target``) and the window as applied (``window_start``, ``window_end``, on the
load's clock), so that a reader needs nothing but the tables.

After each fault the databases are audited until consistent; the time from the fault's end until the audit passes
is the eventual-consistency window. An anomaly that outlives the settling time is recorded, never hidden.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.table import Table

from bench.common import stats
from bench.common.intervals import (
    percentile_interval,
    resolved_percentile,
    success_lower_bound,
    success_upper_bound,
)
from bench.common.names import (
    CONSISTENCY,
    FAILURE_IMPACT,
    FAILURE_TIMELINE,
    FAULT_KIND,
    FAULT_TARGET,
    HEALTHY_SUCCESS,
    NOTES,
    PLACEMENT,
    WINDOW_END,
    WINDOW_START,
)
from bench.experiments.context import RunContext
from bench.experiments.experiment import Experiment, Progress, Tables, each_topology, rows_where_invalid, summary_table
from bench.load.loadgen import LoadSpec
from bench.load.processes import run_load_sync
from bench.load.workload import ShopWorkload, StartsOnFirstRequest, resolve_mix
from bench.system.audit import AuditReport, audit
from bench.system.deploy import Deployment, deploy, placement
from bench.system.faults import PROCESS_FAULTS, FaultPlan, Injector
from bench.system.target import notes, running
from plumbing.resilience import PROFILES


@dataclass(frozen=True, kw_only=True)
class FailureParams:
    """Rates in requests per second, times in seconds. The SLO, the seed and the catalog come from the run's
    context."""

    rate: float = 200.0
    before: float = 0.8
    window: float = 1.6
    after: float = 1.6
    warmup: float = 0.4
    settle_timeout: float = 30.0
    mix: str = "default"
    call_timeout: float = 1.0
    profiles: tuple[str, ...] = PROFILES
    faults: tuple[FaultPlan, ...] = field(
        default_factory=lambda: (
            FaultPlan("kill", "payments"),
            FaultPlan("kill", "gateway"),
            FaultPlan("pause", "orders"),
            FaultPlan("latency", "inventory", 0.2),
            FaultPlan("error", "payments", 0.5),
            FaultPlan("hang", "payments"),
        )
    )

    def planned_seconds(self) -> float:
        """The load of each fault run and its audit, and a deployment per profile (measured on 2 cores: a quick
        run's 6 fault runs took 20 s)."""
        per_fault = self.warmup + self.before + self.window + self.after + 0.2
        return len(self.profiles) * (len(self.faults) * per_fault + 1.5)


QUICK_FAILURE = FailureParams(
    rate=200.0,
    before=0.6,
    window=1.0,
    after=0.8,
    warmup=0.3,
    call_timeout=0.5,
    # One profile in the quick run (``--profiles naive,resilient`` compares both): the resilient one, which a team
    # would deploy. One fault, the one whose blast radius tells the topologies apart: a second (an error rate on
    # payments) cost the quick run about 8 s of its 90 (``archbench run --experiments failure`` makes all six).
    profiles=("resilient",),
    faults=(FaultPlan("kill", "payments"),),
)


@dataclass
class FailureRows:
    """The rows the fault runs of one topology add up to, and what they could not do (``(subject, why)``)."""

    topology: str
    timelines: list[pd.DataFrame] = field(default_factory=list)
    impacts: list[dict[str, object]] = field(default_factory=list)
    audits: list[dict[str, object]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    placement: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {NOTES: notes(self.topology, "failure", self.skipped)} if self.skipped else {}
        if self.impacts:  # at least one fault ran
            tables[FAILURE_TIMELINE] = pd.concat(self.timelines, ignore_index=True)
            tables[FAILURE_IMPACT] = pd.DataFrame(self.impacts)
        if self.audits:
            tables[CONSISTENCY] = pd.DataFrame(self.audits)
        if self.placement is not None:
            tables[PLACEMENT] = self.placement
        return tables


def run_topology(
    context: RunContext, topology: str, params: FailureParams, progress: Progress
) -> dict[str, pd.DataFrame]:
    """Every fault of the matrix on ``topology``, under each resilience profile; returns its tables.

    Per profile one deployment takes every fault in turn; between two faults it is audited until consistent, so each
    fault starts from a settled system.

    On the context's target (already running elsewhere, deployed with the one profile of ``params``: see
    :func:`configure`), the faults that cannot reach it are skipped and nothing is audited (its databases are not
    here); the ``notes`` table says so.
    """
    rows = FailureRows(topology)
    for profile in params.profiles:
        run_profile(context, profile, params, progress, rows)
    return rows.tables()


def run_profile(
    context: RunContext, profile: str, params: FailureParams, progress: Progress, rows: FailureRows
) -> None:
    """The fault matrix on one deployment of ``rows.topology`` with the resilience ``profile`` (or on the context's
    target); adds its rows to ``rows``."""
    topology, seed = rows.topology, context.seed
    with running(
        context.target,
        lambda: deploy(
            topology,
            context.runs / f"{topology}-faults" / profile,
            seed=seed,
            cpus=context.sut_cpus,
            stack=context.stack,
            call_timeout=params.call_timeout,
            admin_token=context.admin_token,
            profile=profile,
        ),
    ) as deployment:
        injector = Injector(deployment)
        if isinstance(deployment, Deployment) and rows.placement is None:
            rows.placement = placement(deployment)
        if deployment.run_dir is None:
            rows.skipped.append(("consistency", "not audited: the target's databases are not on this machine"))
        for index, plan in enumerate((*params.faults, *injector.database_faults())):
            why = injector.unsupported(plan)
            if why is not None:
                rows.skipped.append((plan.name, why))
                continue
            progress(  # within the bar's 40 columns for the quick run's fault on every topology
                f"{topology}: {plan.name} ({profile})",
                params.warmup + params.before + params.window + params.after,
            )
            workload = ShopWorkload(
                seed.users, seed.products, mix=params.mix, seed=seed.seed + index, auth_headers=deployment.auth_headers
            )
            spec = LoadSpec(
                rate=params.rate,
                duration=params.before + params.window + params.after,
                warmup=params.warmup,
                arrival="poisson",
                seed=seed.seed + index,
                timeout=max(5.0, 3 * params.call_timeout),
                # Enough connections that slow requests to a faulty part do not hold back requests to healthy ones
                # in the generator's own pool (that would inflate the blast radius with a client artefact).
                connections=min(256, max(64, int(params.rate))),
            )
            schedule = FaultTimer(injector, plan, params.warmup + params.before, params.window)
            try:
                # The timer starts with the first request, so its clock and the generator's agree.
                result = run_load_sync(deployment.public_url, StartsOnFirstRequest(workload, schedule.start), spec)
            finally:
                schedule.finish()
            load_end = time.monotonic()
            settled = None  # a target's databases are not here: nothing to audit
            if deployment.run_dir is not None:  # right away: the convergence is timed from the load's end
                settled = settle(deployment.run_dir, topology, params.settle_timeout)
            frame = result.to_frame()
            # The window as it really was (the admin call or the kill takes a moment), on the generator's clock.
            start, end = schedule.window_on_load_clock()
            timeline = per_second(frame, start, end)
            fault: dict[str, str | float] = {
                FAULT_KIND: plan.kind,
                FAULT_TARGET: plan.target,
                WINDOW_START: start,
                WINDOW_END: end,
            }
            rows.timelines.append(timeline.assign(topology=topology, profile=profile, fault=plan.name, **fault))
            rows.impacts.append(
                {
                    "topology": topology,
                    "profile": profile,
                    "fault": plan.name,
                    "kind": plan.kind,
                    "target": plan.target,
                    **fault,
                    **impact(frame, start, end, params, context.slo.p99),
                    "restart_seconds": schedule.restart_seconds,
                    "load_valid": result.valid,
                    "load_invalid_reasons": "; ".join(result.invalid_reasons),
                }
            )
            if settled is None:
                continue
            converged, report = settled
            rows.audits.append(
                {
                    "topology": topology,
                    "profile": profile,
                    "fault": plan.name,
                    "consistent": report.ok,
                    # From the end of the load until every invariant held: under load, orders in flight are
                    # legitimately PENDING, so the audit can only pass once the load stops.
                    "convergence_seconds": converged - load_end if report.ok else math.nan,
                    **{f"anomalies_{name}": len(ids) for name, ids in report.anomalies.items()},
                    **report.counts,
                }
            )


class FaultTimer:
    """Applies the fault at ``start`` seconds and lifts it ``window`` seconds later, on a thread of its own."""

    def __init__(self, injector: Injector, plan: FaultPlan, start: float, window: float) -> None:
        self.injector, self.plan, self.start_at, self.window = injector, plan, start, window
        self.restart_seconds = math.nan
        self.error: BaseException | None = None
        self.started = False
        self.applied_at = self.lifted_at = math.nan  # seconds since start(), when the fault really began and ended
        self._begun = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archbench-fault", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.started = True
        self._thread.start()

    def window_on_load_clock(self) -> tuple[float, float]:
        """When the fault was in force, in seconds from the load's start (the planned window if it never began)."""
        if math.isnan(self.applied_at):
            return self.start_at, self.start_at + self.window
        return self.applied_at, self.lifted_at

    def _run(self) -> None:
        try:
            if self._done.wait(max(0.0, self.start_at - (time.monotonic() - self._t0))):
                return
            self.injector.begin(self.plan)
            self.applied_at = time.monotonic() - self._t0
            self._begun = True
            self._done.wait(max(0.0, self.start_at + self.window - (time.monotonic() - self._t0)))
            self._lift()
        except BaseException as exc:  # reported by finish() in the main thread
            self.error = exc

    def _lift(self) -> None:
        if self._begun:
            self._begun = False
            # For a kill the fault lasts until the process is back; otherwise until the fault is lifted.
            before_end = time.monotonic() - self._t0
            seconds = self.injector.end(self.plan)
            self.lifted_at = time.monotonic() - self._t0 if self.plan.kind == "kill" else before_end
            if self.plan.kind == "kill":
                self.restart_seconds = seconds

    def finish(self) -> None:
        """Lift the fault if the load ended early, and surface any error of the timer thread."""
        self._done.set()
        if self.started:
            self._thread.join()
        self._lift()
        if self.error is not None:
            raise RuntimeError(f"fault {self.plan.name} could not be applied: {self.error}") from self.error


def settle(run_dir: Path, topology: str, timeout: float) -> tuple[float, AuditReport]:
    """Audit until consistent or ``timeout``; returns (monotonic time it became consistent, last report)."""
    deadline = time.monotonic() + timeout
    while True:
        report = audit(run_dir, topology)
        if report.ok or time.monotonic() >= deadline:
            return time.monotonic(), report
        time.sleep(0.1)


def per_second(frame: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """Per second (by intended time) and per operation: requests, successes, p50, p99; ``in_fault`` marks the window."""
    frame = stats.measured(frame).copy()
    frame["second"] = np.floor(frame["intended"]).astype(int)
    frame["ok"] = frame["error"].astype(str) == ""
    frame["latency"] = frame["done"] - frame["intended"]
    rows = []
    for (sec, op), group in frame.groupby(["second", "op"], observed=True):
        lat = group["latency"].to_numpy()
        second = int(str(sec))
        rows.append(
            {
                "second": second,
                "op": str(op),
                "requests": len(group),
                "successes": int(group["ok"].sum()),
                "success_ratio": float(group["ok"].mean()),
                "p50": stats.percentile(lat, 50.0),
                "p99": stats.percentile(lat, 99.0),
                "in_fault": start <= second < end,
            }
        )
    return pd.DataFrame(rows)


def healthy_seconds(frame: pd.DataFrame, slo_p99: float) -> dict[int, bool]:
    """Per second of intended send time, whether the system was healthy, judged by what the second's sample can carry.

    All operations of a second are pooled (at 200 req/s a second holds 10-60 requests of each operation, too few for
    a p99 per operation, which would be its slowest request). A second is unhealthy when its success ratio is below
    :data:`HEALTHY_SUCCESS` with 95% confidence (the upper end of its Clopper-Pearson interval is below it), or when
    the highest of p99, p90, p50 that the second resolves is over the SLO with 95% confidence (the lower end of its
    interval is over it: a percentile below p99 that is over the SLO puts p99 over it too). One slow request in a
    clean second therefore marks nothing.
    """
    seconds = np.floor(frame["intended"].to_numpy()).astype(int)
    ok = (frame["error"].astype(str) == "").to_numpy()
    latency = (frame["done"] - frame["intended"]).to_numpy()
    healthy: dict[int, bool] = {}
    for second in np.unique(seconds):
        mine = seconds == second
        successes, requests = int(ok[mine].sum()), int(mine.sum())
        failing = success_upper_bound(successes, requests) < HEALTHY_SUCCESS
        resolved = resolved_percentile(latency[mine & ok])
        slow = resolved is not None and resolved[1][0] > slo_p99
        healthy[int(second)] = not (failing or slow)
    return healthy


def judged_op(ok: npt.NDArray[np.bool_], answered: npt.NDArray[np.float64], slo_p99: float) -> tuple[bool, bool]:
    """Whether one operation was surely hurt during a fault window, and whether it was surely spared, at 95%
    confidence: hurt when its success ratio is below :data:`HEALTHY_SUCCESS` or a percentile it resolves is over the
    SLO; spared when its success ratio is above it and its p99 is resolved and within the SLO."""
    successes, requests = int(ok.sum()), len(ok)
    slow = resolved_percentile(answered)
    hurt = success_upper_bound(successes, requests) < HEALTHY_SUCCESS or (slow is not None and slow[1][0] > slo_p99)
    p99 = percentile_interval(answered, 99.0)
    spared = success_lower_bound(successes, requests) >= HEALTHY_SUCCESS and p99 is not None and p99[1] <= slo_p99
    return hurt, spared


def impact(frame: pd.DataFrame, start: float, end: float, params: FailureParams, slo_p99: float) -> dict[str, float]:
    """Availability and p99 per operation during the window ``[start, end)``, the blast radius, and the times to
    detect and to recover (see the module docstring); ``slo_p99`` in seconds."""
    frame = stats.measured(frame)
    during = frame[(frame["intended"] >= start) & (frame["intended"] < end)]
    weights = resolve_mix(params.mix)
    total = sum(weights.values())
    out: dict[str, float] = {}
    radius, surely, maybe = 0.0, 0.0, 0.0
    for op, weight in weights.items():
        group = during[during["op"].astype(str) == op]
        if group.empty:
            continue
        ok = (group["error"].astype(str) == "").to_numpy()
        latency = (group["done"] - group["intended"]).to_numpy()
        success = float(ok.mean())
        p99 = stats.percentile(latency, 99.0)
        out[f"availability_{op}"] = success
        out[f"p99_{op}"] = p99
        if success < HEALTHY_SUCCESS or not p99 <= slo_p99:
            radius += weight / total
        hurt, spared = judged_op(ok, latency[ok], slo_p99)
        surely += weight / total if hurt else 0.0
        maybe += weight / total if not hurt and not spared else 0.0
    out["blast_radius"] = radius
    # What the window's sample can tell: the operations surely hurt, and those surely or possibly hurt.
    out["blast_radius_low"] = surely
    out["blast_radius_high"] = surely + maybe
    healthy = healthy_seconds(frame, slo_p99)
    bad_after_start = [s for s, ok in sorted(healthy.items()) if not ok and s >= math.floor(start)]
    out["time_to_detect"] = float(bad_after_start[0] - start) if bad_after_start else math.nan
    last_bad = max((s for s, ok in healthy.items() if not ok), default=None)
    out["time_to_recover"] = max(0.0, float(last_bad + 1 - end)) if last_bad is not None else 0.0
    return out


def planned_seconds(context: RunContext, params: FailureParams) -> float:
    return len(context.topologies) * params.planned_seconds()


#: The fault a target takes when none of the planned ones can reach it (the quick run's kill needs the processes here).
ON_TARGET_FAULT: Final = FaultPlan("error", "payments", 0.5)


def configure(context: RunContext, params: FailureParams) -> FailureParams:
    """On a target, the one profile it was deployed with, and a dependency fault (through its admin URLs) where every
    planned fault is a process fault, which needs the processes on this machine (they are skipped, with a note)."""
    if context.target is None:
        return params
    faults = params.faults
    if all(plan.kind in PROCESS_FAULTS for plan in faults):
        faults = (*faults, ON_TARGET_FAULT)
    return replace(params, profiles=(context.target.spec.profile,), faults=faults)


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    return [
        {
            "experiment": "failure",
            "topology": row["topology"],
            "fault": row["fault"],
            "reasons": row["load_invalid_reasons"],
        }
        for row in rows_where_invalid(tables, FAILURE_IMPACT, "load_valid")
    ]


def summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    """One row per fault run, grouped by resilience profile; under 80 columns wide."""
    if FAILURE_IMPACT not in tables:
        return None
    impact = tables[FAILURE_IMPACT]
    invalid = "; * invalid run" if not impact["load_valid"].all() else ""  # defined only where a row carries it
    table = summary_table(
        "archbench: failure impact during the fault, consistency after it",
        caption="blast: share of the mix hurt, then its bounds (what the window's sample can tell); checkout, browse: "
        f"availability during the fault; recover, settled: seconds after the fault, after the load{invalid}; "
        "profiles: resilience of the calls",
    )
    for column in ("topology", "fault", "blast", "checkout", "browse", "recover", "settled"):
        table.add_column(column, justify="left" if column in ("topology", "fault") else "right", no_wrap=True)
    audited = tables[CONSISTENCY].to_dict(orient="records") if CONSISTENCY in tables else []  # none on a target
    audits = {
        (str(a["topology"]), str(a["profile"]), str(a["fault"])): {str(k): v for k, v in a.items()} for a in audited
    }
    for profile, rows in impact.groupby("profile", sort=False):
        table.add_row(f"[b]{profile}[/b]")
        for row in rows.to_dict(orient="records"):
            table.add_row(
                str(row["topology"]) + ("" if row["load_valid"] else " *"),
                str(row["fault"]),
                blast_text(row),
                f"{row.get('availability_checkout', float('nan')):.0%}",
                f"{row.get('availability_browse', float('nan')):.0%}",
                f"{row['time_to_recover']:.1f}",
                settled_text(audits.get((str(row["topology"]), str(row["profile"]), str(row["fault"])))),
            )
    return table


def blast_text(row: Mapping[Any, Any]) -> str:
    """The blast radius, with its bounds where the window's sample left them apart: "30% 30–45"."""
    text = f"{row['blast_radius']:.0%}"
    low, high = row.get("blast_radius_low", math.nan), row.get("blast_radius_high", math.nan)
    if math.isfinite(low) and math.isfinite(high) and f"{low:.0%}" != f"{high:.0%}":
        text += f" {low * 100:.0f}–{high * 100:.0f}"
    return text


def settled_text(audit: Mapping[Any, Any] | None) -> str:
    if audit is None:
        return "not audited"
    return f"{audit['convergence_seconds']:.1f}" if audit["consistent"] else "ANOMALIES"


EXPERIMENT = Experiment(
    name="failure",
    help="the same faults under the same load on every topology and resilience profile, then an audit",
    params=FailureParams(),
    quick_by_default=True,
    quick=QUICK_FAILURE,
    on_target=True,
    injects_faults=True,
    options={"profiles": "profiles"},
    uses=("seed", "products", "users", "slo_p99"),
    planned_seconds=planned_seconds,
    run=each_topology(run_topology),
    invalid_runs=invalid_runs,
    summary=summary,
    configure=configure,
)

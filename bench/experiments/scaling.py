"""The scale-out experiment: what one more replica buys, the monolith scaled as a whole against the microservices
scaling only the service that saturates first, on the same CPU budget.

For each mix (browse-heavy, checkout-heavy) and each topology, step k = 1..N runs on k CPUs:

* the monolith runs k workers sharing its port (the kernel spreads connections, as ``uvicorn --workers`` does);
* the microservices run every service once and k replicas of the one that saturates first: the process that used
  the most CPU at the highest load of step 1 (its callers balance over the replicas; a gateway's replicas share the
  public port like the monolith's workers).

At each step the sustainable throughput is searched (:mod:`bench.load.search`) with open-loop runs: rates rise by
``growth`` from the previous step's result until a run misses the SLO (p99, error budget, or the generator could not
send the offered rate), then runs halfway between the last pass and the first miss refine it. Each run meters CPU
and peak RSS per process. On a small machine N is small; :mod:`bench.common.usl` fits the Universal Scalability Law
to the measured points, and the report draws its extrapolation as a model, never as a measurement.

The generator needs CPU too: the budget of step k is the first k CPUs of the system under test's set followed by the
generator's. When k exceeds the system's set the generator shares a CPU with it, and the rows say so
(``generator_shares_cpu``): its lag then only adds to the measured latency (latency runs from the intended send time),
so a rate that passes is still one the system sustained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from rich.table import Table

from bench.common import stats, usl
from bench.common.names import SCALING, SCALING_MIXES, SCALING_MODEL, SCALING_PROCESSES, SCALING_STEPS
from bench.experiments.context import RunContext, Slo
from bench.experiments.experiment import Experiment, Progress, Tables, rows_where_invalid, summary_table
from bench.experiments.network import MeteredRun, metered_run
from bench.load.loadgen import LoadResult, LoadSpec
from bench.load.search import Judged, highest_passing, rising, search
from bench.load.workload import ShopWorkload
from bench.system.deploy import Deployment, deploy
from bench.system.resources import cpu_per_request

TOPOLOGIES = ("monolith", "microservices")


@dataclass(frozen=True, kw_only=True)
class ScalingParams:
    """Rates in requests per second, durations in seconds. The SLO, the seed and the catalog come from the run's
    context."""

    mixes: tuple[str, ...] = SCALING_MIXES
    max_replicas: int = 0  # 0: as many as the system's CPUs, at least 2 (see the module docstring)
    start_rate: float = 600.0
    growth: float = 2.0
    refine: int = 3  # runs that halve the gap between the highest pass and the lowest miss: 2x / 2^3, about 12%
    max_runs: int = 12  # per step, a bound on the search
    step_duration: float = 1.0
    step_warmup: float = 0.4
    pause: float = 0.3  # between runs, so that a saturated run's backlog does not spill into the next
    min_achieved: float = 0.95  # of the offered rate, for a run to pass
    arrival: str = "poisson"

    def replicas(self, sut_cpus: Sequence[int]) -> int:
        return self.max_replicas or max(2, len(sut_cpus))

    def planned_seconds(self, sut_cpus: Sequence[int], topologies: Sequence[str]) -> float:
        """An estimate: about six runs per step (46 and 48 over 8 steps in two default runs on 2 cores), each with
        0.3 s of its own beside its load (the stall probe, the meters), and a start per step."""
        steps = len(self.mixes) * len([t for t in topologies if t in TOPOLOGIES]) * self.replicas(sut_cpus)
        return steps * (6.0 * (self.step_duration + self.step_warmup + self.pause + 0.3) + 2.0)


QUICK_SCALING = ScalingParams(step_duration=1.0, step_warmup=0.3, pause=0.2, start_rate=500.0, refine=2, max_runs=8)


def budget(k: int, sut_cpus: Sequence[int], gen_cpus: Sequence[int]) -> tuple[frozenset[int], bool]:
    """The CPUs of step ``k`` and whether the generator's CPUs are among them."""
    ordered = list(dict.fromkeys([*sorted(sut_cpus), *sorted(gen_cpus)]))
    if k > len(ordered):
        raise ValueError(f"{k} replicas need {k} CPUs; this machine gives {len(ordered)}")
    chosen = frozenset(ordered[:k])
    return chosen, bool(chosen & set(gen_cpus))


def judge(result: LoadResult, params: ScalingParams, slo: Slo) -> tuple[bool, str]:
    """Whether a run of the search passes (the SLO met, and the generator sent the offered rate), and why not."""
    summary = result.summary()
    reasons = []
    if not summary["p99"] <= slo.p99:
        reasons.append(f"p99 {summary['p99'] * 1e3:.1f} ms over {slo.p99 * 1e3:g} ms")
    if not summary["error_rate"] < slo.error_budget:
        reasons.append(f"error rate {summary['error_rate']:.2%}")
    if not summary["achieved_rate"] >= params.min_achieved * summary["offered_rate"]:
        reasons.append(f"achieved {summary['achieved_rate']:.0f} of {summary['offered_rate']:.0f} req/s offered")
    return not reasons, "; ".join(reasons)


Probe = Judged[MeteredRun]
"""One load run of the search."""


def probe(
    deployment: Deployment, workload: ShopWorkload, rate: float, params: ScalingParams, index: int, context: RunContext
) -> Probe:
    spec = LoadSpec(
        rate=rate,
        duration=params.step_duration,
        warmup=params.step_warmup,
        arrival=params.arrival,
        seed=context.seed.seed + index,
        expected_latency=context.slo.p99,
    )
    result, usage = metered_run(deployment.public_url, deployment.supervisor.pids(), workload, spec)
    time.sleep(params.pause)
    passed, why = judge(result, params, context.slo)
    return Judged(rate, passed, why, MeteredRun("scaling", index, result, usage))


def find_sustainable(
    deployment: Deployment,
    workload: ShopWorkload,
    start: float,
    params: ScalingParams,
    context: RunContext,
    report: Callable[[str], None],
) -> list[Probe]:
    """Runs at rates doubling (by ``growth``) from ``start`` until one misses the SLO, then ``refine`` runs halving
    the gap between the last pass and the first miss; when even ``start`` missed, the same again from a third of it,
    while that stays above an eighth of ``params.start_rate``."""

    def climb(start: float) -> list[Probe]:
        runs: list[Probe] = []  # of this climb: their count seeds the next run

        def run(rate: float) -> Probe:
            report(f"{rate:,.0f} req/s")
            runs.append(probe(deployment, workload, rate, params, len(runs), context))
            return runs[-1]

        ladder = rising(start, params.growth, digits=-1, compound=True)
        return search(run, ladder, max_runs=params.max_runs, refine=params.refine, digits=-1)

    probes: list[Probe] = []
    while True:
        probes += (found := climb(start))
        if highest_passing(found) is not None or not start > params.start_rate / 8:
            return probes
        start = round(start / 3, -1)  # even the first rate failed: look lower


def busiest(probes: Sequence[Probe], component_of: Mapping[str, str]) -> str:
    """The component whose process used the most CPU in the most loaded run: the one that saturates first."""
    usage = max(probes, key=lambda p: p.rate).result.usage
    name = max(usage, key=lambda process: usage[process].cpu_seconds)
    return component_of[name]


@dataclass(frozen=True)
class ScalePoint:
    """Step k of the scale-out of one topology and mix: its CPUs, the component scaled, and the runs of its search."""

    topology: str
    mix: str
    replicas: int
    cpus: frozenset[int]
    shares: bool
    scaled: str
    component_of: dict[str, str] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)


def run_step(
    context: RunContext,
    point: ScalePoint,
    start: float,
    params: ScalingParams,
    progress: Progress,
) -> ScalePoint:
    """Deploy ``point``'s topology on its CPUs with its replicas, search its sustainable rate from ``start``; returns
    the point with its runs and where each process's component."""
    seed, k, scaled = context.seed, point.replicas, point.scaled
    replicas = {scaled: k} if k > 1 else {}
    label = f"scaling {point.mix}: {point.topology}, " + (f"{k} x {scaled}" if k > 1 else "one of each")
    run_dir = context.runs / f"scaling-{point.mix}-{point.topology}-{k}"
    progress(f"{label}: starting", 2.0)
    with deploy(
        point.topology, run_dir, seed=seed, cpus=point.cpus, stack=context.stack, replicas=replicas
    ) as deployment:
        workload = ShopWorkload(
            seed.users, seed.products, mix=point.mix, seed=seed.seed, auth_headers=deployment.auth_headers
        )

        def report(rate: str) -> None:
            progress(f"{label}: {rate}", params.step_duration + params.step_warmup + params.pause)

        probes = find_sustainable(deployment, workload, start, params, context, report)
        component_of = {p.name: p.front for p in deployment.config.processes}
    return replace(point, component_of=component_of, probes=probes)


def run(context: RunContext, params: ScalingParams, progress: Progress) -> dict[str, pd.DataFrame]:
    """Every mix x topology x step; returns the tables ``scaling``, ``scaling_steps``, ``scaling_processes`` and
    ``scaling_model``."""
    points: list[ScalePoint] = []
    sut_cpus, gen_cpus = context.system_cpus, context.generator_cpus
    n = params.replicas(sut_cpus)
    for mix in params.mixes:
        for topology in [t for t in TOPOLOGIES if t in context.topologies]:
            scaled = "monolith" if topology == "monolith" else ""
            start = params.start_rate
            for k in range(1, n + 1):
                cpus, shares = budget(k, sut_cpus, gen_cpus)
                point = run_step(context, ScalePoint(topology, mix, k, cpus, shares, scaled), start, params, progress)
                if not scaled:  # step 1 tells which service saturates first
                    scaled = busiest(point.probes, point.component_of)
                    point = replace(point, scaled=scaled)
                points.append(point)
                top = highest_passing(point.probes)
                start = top.rate if top is not None else start
    if not points:
        return {}
    scaling = pd.DataFrame([step_row(p) for p in points])
    return {
        SCALING: scaling,
        SCALING_STEPS: pd.DataFrame([probe_row(p, probe) for p in points for probe in p.probes]),
        SCALING_PROCESSES: pd.DataFrame([row for p in points for row in process_rows(p)]),
        SCALING_MODEL: usl.model_frame(scaling),
    }


def step_row(step: ScalePoint) -> dict[str, Any]:
    top = highest_passing(step.probes)
    scaled_procs = [name for name, component in step.component_of.items() if component == step.scaled]
    if top is None:
        cpu_us, rss_total, rss_replica, valid = math.nan, 0, math.nan, False
        note = "no rate met the SLO"
    else:
        result, usage = top.result.result, top.result.usage
        cpu_us = cpu_per_request(usage, stats.successes(result.to_frame()))["total"] * 1e6
        rss_total = sum(u.peak_rss_bytes for u in usage.values())
        rss_replica = sum(usage[p].peak_rss_bytes for p in scaled_procs if p in usage) / max(1, len(scaled_procs))
        valid = result.valid
        note = "" if valid else "; ".join(result.invalid_reasons)
    return {
        "topology": step.topology,
        "mix": step.mix,
        "replicas": step.replicas,
        "cpus": len(step.cpus),
        "scaled": step.scaled,
        "sustainable_rps": top.rate if top else math.nan,
        "cpu_per_request_us": cpu_us,
        "rss_total_bytes": rss_total,
        "rss_per_replica_bytes": rss_replica,
        "processes": len(step.component_of),
        "valid": valid,
        "generator_shares_cpu": step.shares,
        "note": note,
    }


def probe_row(step: ScalePoint, p: Probe) -> dict[str, Any]:
    summary = p.result.result.summary()
    frame = p.result.result.to_frame()
    return {
        "topology": step.topology,
        "mix": step.mix,
        "replicas": step.replicas,
        "cpus": len(step.cpus),
        "target_rate": p.rate,
        "achieved_rate": summary["achieved_rate"],
        "p50": summary["p50"],
        "p99": summary["p99"],
        "error_rate": summary["error_rate"],
        "met_slo": p.passed,
        "valid": summary["valid"],
        "invalid_reasons": "; ".join(summary["invalid_reasons"]),
        "cpu_per_request_us": cpu_per_request(p.result.usage, stats.successes(frame))["total"] * 1e6,
    }


def process_rows(step: ScalePoint) -> list[dict[str, Any]]:
    top = highest_passing(step.probes)
    if top is None:
        return []
    usage = top.result.usage
    total = sum(u.cpu_seconds for u in usage.values()) or math.nan
    return [
        {
            "topology": step.topology,
            "mix": step.mix,
            "replicas": step.replicas,
            "process": name,
            "component": step.component_of.get(name, name),
            "cpu_seconds": used.cpu_seconds,
            "cpu_share": used.cpu_seconds / total,
            "peak_rss_bytes": used.peak_rss_bytes,
        }
        for name, used in usage.items()
    ]


def planned_seconds(context: RunContext, params: ScalingParams) -> float:
    return params.planned_seconds(context.system_cpus, context.topologies)


def check(context: RunContext, params: ScalingParams) -> str | None:
    """Before anything runs: the last step must find its CPUs (on this machine; a target cannot scale)."""
    if context.sut_cpus is None:
        return None
    try:
        budget(params.replicas(context.system_cpus), context.system_cpus, context.generator_cpus)
    except ValueError as exc:
        return str(exc)
    return None


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    return [
        {
            "experiment": "scaling",
            "topology": row["topology"],
            "run": f"{row['mix']}, {row['replicas']} replicas, {row['target_rate']:g} req/s",
            "reasons": row["invalid_reasons"],
        }
        for row in rows_where_invalid(tables, SCALING_STEPS)
    ]


def summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    """The scaling steps at 80 columns: one row per mix, topology and k."""
    if SCALING not in tables:
        return None
    frame = tables[SCALING]
    caption = [
        "k: CPUs, and workers of the monolith or replicas of the scaled component (the one that saturates first); "
        "req/s: sustainable throughput; CPU: per request; MB: peak RSS of all processes, then per replica"
    ]
    if frame["generator_shares_cpu"].any():
        caption.append("*: the generator shared a CPU with the system at this step (too few CPUs on this machine)")
    if not frame["valid"].all():
        caption.append("!: invalid run")
    table = summary_table("archbench: scaling out on k CPUs", caption="; ".join(caption))
    for column in ("mix", "topology", "scaled", "k", "req/s", "CPU us", "MB", "MB/rep"):
        table.add_column(column, justify="left" if column in ("mix", "topology", "scaled") else "right", no_wrap=True)
    for row in frame.to_dict(orient="records"):
        flags = ("" if row["valid"] else "!") + ("*" if row["generator_shares_cpu"] else "")
        rate = row["sustainable_rps"]
        table.add_row(
            str(row["mix"]),
            str(row["topology"]),
            str(row["scaled"]),
            f"{row['replicas']}{flags}",
            "none" if math.isnan(rate) else f"{rate:,.0f}",
            "-" if math.isnan(row["cpu_per_request_us"]) else f"{row['cpu_per_request_us']:,.0f}",
            f"{row['rss_total_bytes'] / 2**20:.0f}",
            "-" if math.isnan(row["rss_per_replica_bytes"]) else f"{row['rss_per_replica_bytes'] / 2**20:.0f}",
        )
    return table


EXPERIMENT = Experiment(
    name="scaling",
    help="sustainable throughput of two mixes on 1..N CPUs: the monolith with N workers, the microservices with N "
    "replicas of the service that saturates first",
    params=ScalingParams(),
    quick=QUICK_SCALING,
    scope="run",
    options={"scale_to": "max_replicas"},
    uses=("seed", "products", "users", "slo_p99", "error_budget"),
    planned_seconds=planned_seconds,
    run=run,
    invalid_runs=invalid_runs,
    summary=summary,
    check=check,
)

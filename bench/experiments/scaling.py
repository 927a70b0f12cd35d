"""The scale-out experiment: what one more replica buys, the monolith scaled as a whole against the microservices
scaling only the service that saturates first, on the same CPU budget.

For each mix (browse-heavy, checkout-heavy) and each topology, step k = 1..N runs on k CPUs:

* the monolith runs k workers sharing its port (the kernel spreads connections, as ``uvicorn --workers`` does);
* the microservices run every service once and k replicas of the one that saturates first: the process that used
  the most CPU at the highest load of step 1 (its callers balance over the replicas; a gateway's replicas share the
  public port like the monolith's workers).

At each step the sustainable throughput is searched with open-loop runs: rates rise by ``growth`` from the previous
step's result until a run misses the SLO (p99, error budget, or the generator could not send the offered rate), then
runs halfway between the last pass and the first miss refine it. Each run meters CPU and peak RSS per process.
On a small machine N is small; :mod:`bench.common.usl` fits the Universal Scalability Law to the measured points,
and the report draws its extrapolation as a model, never as a measurement.

The generator needs CPU too: the budget of step k is the first k CPUs of the system under test's set followed by the
generator's. When k exceeds the system's set the generator shares a CPU with it, and the rows say so
(``generator_shares_cpu``): its lag then only adds to the measured latency (latency runs from the intended send time),
so a rate that passes is still one the system sustained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import stats, usl
from bench.common.names import SCALING_MIXES
from bench.experiments.network import metered_run
from bench.load.loadgen import LoadResult, LoadSpec
from bench.load.workload import ShopWorkload
from bench.system.deploy import Deployment, deploy
from bench.system.resources import Usage, cpu_per_request
from shop.seed import SeedSpec

TOPOLOGIES = ("monolith", "microservices")


@dataclass(frozen=True)
class ScalingParams:
    """Rates in requests per second, durations in seconds."""

    mixes: tuple[str, ...] = SCALING_MIXES
    max_replicas: int = 0  # 0: as many as the system's CPUs, at least 2 (see the module docstring)
    start_rate: float = 300.0
    growth: float = 2.0
    refine: int = 3  # runs that halve the gap between the highest pass and the lowest miss: 2x / 2^3, about 12%
    max_runs: int = 12  # per step, a bound on the search
    step_duration: float = 4.0
    step_warmup: float = 1.0
    pause: float = 0.5  # between runs, so that a saturated run's backlog does not spill into the next
    slo_p99: float = 0.050
    error_budget: float = 0.001
    min_achieved: float = 0.95  # of the offered rate, for a run to pass
    arrival: str = "poisson"
    seed: int = 1
    products: int = 1000
    users: int = 200

    def replicas(self, sut_cpus: Sequence[int]) -> int:
        return self.max_replicas or max(2, len(sut_cpus))

    def planned_seconds(self, sut_cpus: Sequence[int], topologies: Sequence[str]) -> float:
        """A rough bound: about seven runs per step, and a start per step."""
        steps = len(self.mixes) * len([t for t in topologies if t in TOPOLOGIES]) * self.replicas(sut_cpus)
        return steps * (7 * (self.step_duration + self.step_warmup + self.pause) + 2.0)


QUICK_SCALING = ScalingParams(step_duration=1.0, step_warmup=0.3, pause=0.2, start_rate=500.0, refine=2, max_runs=8)

Progress = Callable[[str, float], None]


@dataclass
class Probe:
    """One load run of the search."""

    rate: float
    result: LoadResult
    usage: dict[str, Usage]
    met_slo: bool

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary()


def budget(k: int, sut_cpus: Sequence[int], gen_cpus: Sequence[int]) -> tuple[frozenset[int], bool]:
    """The CPUs of step ``k`` and whether the generator's CPUs are among them."""
    ordered = list(dict.fromkeys([*sorted(sut_cpus), *sorted(gen_cpus)]))
    if k > len(ordered):
        raise ValueError(f"{k} replicas need {k} CPUs; this machine gives {len(ordered)}")
    chosen = frozenset(ordered[:k])
    return chosen, bool(chosen & set(gen_cpus))


def passes(result: LoadResult, params: ScalingParams) -> bool:
    summary = result.summary()
    return bool(
        summary["p99"] <= params.slo_p99
        and summary["error_rate"] < params.error_budget
        and summary["achieved_rate"] >= params.min_achieved * summary["offered_rate"]
    )


def probe(deployment: Deployment, workload: ShopWorkload, rate: float, params: ScalingParams, index: int) -> Probe:
    spec = LoadSpec(
        rate=rate,
        duration=params.step_duration,
        warmup=params.step_warmup,
        arrival=params.arrival,
        seed=params.seed + index,
        expected_latency=params.slo_p99,
    )
    result, usage = metered_run(deployment.public_url, deployment.supervisor.pids(), workload, spec)
    time.sleep(params.pause)
    return Probe(rate, result, usage, passes(result, params))


def search(
    deployment: Deployment, workload: ShopWorkload, start: float, params: ScalingParams, report: Callable[[str], None]
) -> list[Probe]:
    """Runs at rising rates until one misses the SLO, then ``refine`` runs halving the gap between the last pass and
    the first miss."""
    probes: list[Probe] = []
    rate = start
    while len(probes) < params.max_runs:
        report(f"{rate:,.0f} req/s")
        probes.append(probe(deployment, workload, rate, params, len(probes)))
        if not probes[-1].met_slo:
            break
        rate = round(rate * params.growth, -1)
    for _ in range(params.refine):
        passed = [p.rate for p in probes if p.met_slo]
        failed = [p.rate for p in probes if not p.met_slo]
        if not (passed and failed and len(probes) < params.max_runs):
            break
        middle = round((max(passed) + min(failed)) / 2, -1)
        if not max(passed) < middle < min(failed):
            break
        report(f"{middle:,.0f} req/s")
        probes.append(probe(deployment, workload, middle, params, len(probes)))
    passed = [p.rate for p in probes if p.met_slo]
    if not passed and start > params.start_rate / 8:  # even the first rate failed: look lower once
        probes.extend(search(deployment, workload, round(start / 3, -1), params, report))
    return probes


def busiest(probes: Sequence[Probe], component_of: Mapping[str, str]) -> str:
    """The component whose process used the most CPU in the most loaded run: the one that saturates first."""
    top = max(probes, key=lambda p: p.rate)
    name = max(top.usage, key=lambda process: top.usage[process].cpu_seconds)
    return component_of[name]


@dataclass(frozen=True)
class Step:
    topology: str
    mix: str
    replicas: int
    cpus: frozenset[int]
    shares: bool
    scaled: str
    component_of: dict[str, str]
    probes: list[Probe]


def run_step(
    topology: str,
    mix: str,
    k: int,
    scaled: str,
    start: float,
    cpus: tuple[frozenset[int], bool],
    run_dir: Path,
    params: ScalingParams,
    stack: str,
    progress: Progress,
) -> Step:
    seed = SeedSpec(seed=params.seed, products=params.products, users=params.users)
    replicas = {scaled: k} if k > 1 else {}
    label = f"scaling {mix}: {topology}, " + (f"{k} x {scaled}" if k > 1 else "one of each")
    progress(f"{label}: starting", 2.0)
    with deploy(topology, run_dir, seed=seed, cpus=cpus[0], stack=stack, replicas=replicas) as deployment:
        workload = ShopWorkload(
            params.users, params.products, mix=mix, seed=params.seed, auth_headers=deployment.auth_headers
        )

        def report(rate: str) -> None:
            progress(f"{label}: {rate}", params.step_duration + params.step_warmup + params.pause)

        probes = search(deployment, workload, start, params, report)
        component_of = {p.name: p.front for p in deployment.config.processes}
    return Step(topology, mix, k, cpus[0], cpus[1], scaled, component_of, probes)


def run_experiment(
    topologies: Sequence[str],
    params: ScalingParams,
    out_dir: Path,
    sut_cpus: Sequence[int],
    gen_cpus: Sequence[int],
    stack: str,
    progress: Progress,
) -> dict[str, pd.DataFrame]:
    """Every mix x topology x step; returns the tables ``scaling``, ``scaling_steps``, ``scaling_processes`` and
    ``scaling_model``."""
    steps: list[Step] = []
    n = params.replicas(sut_cpus)
    for mix in params.mixes:
        for topology in [t for t in TOPOLOGIES if t in topologies]:
            scaled = "monolith" if topology == "monolith" else ""
            start = params.start_rate
            for k in range(1, n + 1):
                cpus = budget(k, sut_cpus, gen_cpus)
                run_dir = out_dir / f"scaling-{mix}-{topology}-{k}"
                step = run_step(topology, mix, k, scaled, start, cpus, run_dir, params, stack, progress)
                if not scaled:  # step 1 tells which service saturates first
                    scaled = busiest(step.probes, step.component_of)
                    step = replace(step, scaled=scaled)
                steps.append(step)
                passed = [p.rate for p in step.probes if p.met_slo]
                start = max(passed) if passed else start
    if not steps:
        return {}
    scaling = pd.DataFrame([step_row(s) for s in steps])
    return {
        "scaling": scaling,
        "scaling_steps": pd.DataFrame([probe_row(s, p) for s in steps for p in s.probes]),
        "scaling_processes": pd.DataFrame([row for s in steps for row in process_rows(s)]),
        "scaling_model": usl.model_frame(scaling),
    }


def best(step: Step) -> Probe | None:
    passed = [p for p in step.probes if p.met_slo]
    return max(passed, key=lambda p: p.rate) if passed else None


def step_row(step: Step) -> dict[str, Any]:
    top = best(step)
    scaled_procs = [name for name, component in step.component_of.items() if component == step.scaled]
    if top is None:
        cpu_us, rss_total, rss_replica, valid = math.nan, 0, math.nan, False
        note = "no rate met the SLO"
    else:
        frame = top.result.to_frame()
        cpu_us = cpu_per_request(top.usage, stats.successes(frame))["total"] * 1e6
        rss_total = sum(u.peak_rss_bytes for u in top.usage.values())
        rss_replica = sum(top.usage[p].peak_rss_bytes for p in scaled_procs if p in top.usage) / max(
            1, len(scaled_procs)
        )
        valid = top.result.valid
        note = "" if valid else "; ".join(top.result.invalid_reasons)
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


def probe_row(step: Step, p: Probe) -> dict[str, Any]:
    summary = p.summary
    frame = p.result.to_frame()
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
        "met_slo": p.met_slo,
        "valid": summary["valid"],
        "invalid_reasons": "; ".join(summary["invalid_reasons"]),
        "cpu_per_request_us": cpu_per_request(p.usage, stats.successes(frame))["total"] * 1e6,
    }


def process_rows(step: Step) -> list[dict[str, Any]]:
    top = best(step)
    if top is None:
        return []
    total = sum(u.cpu_seconds for u in top.usage.values()) or math.nan
    return [
        {
            "topology": step.topology,
            "mix": step.mix,
            "replicas": step.replicas,
            "process": name,
            "component": step.component_of.get(name, name),
            "cpu_seconds": usage.cpu_seconds,
            "cpu_share": usage.cpu_seconds / total,
            "peak_rss_bytes": usage.peak_rss_bytes,
        }
        for name, usage in top.usage.items()
    ]

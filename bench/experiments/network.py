"""The network-overhead experiment: what each topology costs in latency, throughput, CPU and memory.

For each topology, on the same pinned CPUs:

1. ``low``: the default operation mix at a low rate: per-operation latency percentiles;
2. ``traced``: a few requests per operation with a sampled ``traceparent``: the per-hop breakdown;
3. ``sweep``: increasing rates until the p99 breaks the SLO: latency against offered load, sustainable throughput,
   and at every step CPU seconds and peak RSS per process.

Going monolith -> colocated -> microservices separates the cost of splitting data and serializing (colocated) from
the cost of processes and the network (microservices).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from rich.table import Table

from bench.common import stats
from bench.common.names import (
    COMPLEXITY_LIVE,
    NOTES,
    PER_OPERATION,
    PLACEMENT,
    REQUESTS,
    RESOURCES,
    STEPS,
)
from bench.experiments.context import RunContext, Slo
from bench.experiments.experiment import Experiment, Progress, Tables, each_topology, rows_where_invalid
from bench.load.loadgen import LoadResult, LoadSpec, Request, run_load_sync
from bench.load.search import Judged, search
from bench.load.workload import OPS, ShopWorkload
from bench.system.complexity import live_counts
from bench.system.deploy import Deployed, Deployment, deploy, placement
from bench.system.resources import ResourceMeter, Usage, cpu_per_request
from bench.system.target import NOT_METERED, notes, running
from bench.system.traces import load_spans, spans_frame, summarize
from plumbing import tracing


@dataclass(frozen=True, kw_only=True)
class NetworkParams:
    """Rates in requests per second, durations in seconds. The SLO, the seed and the catalog come from the run's
    context."""

    low_rate: float = 200.0
    low_duration: float = 15.0
    warmup: float = 2.0
    traced_per_op: int = 30
    sweep_rates: tuple[float, ...] = (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000)
    step_duration: float = 5.0
    step_warmup: float = 1.0
    mix: str = "default"
    arrival: str = "poisson"

    def planned_seconds(self) -> float:
        """An upper bound of the measuring time per topology (the sweep usually stops earlier)."""
        traced = self.traced_per_op * len(OPS) / 50.0 + 1.0
        sweep = len(self.sweep_rates) * (self.step_duration + self.step_warmup)
        return self.warmup + self.low_duration + traced + sweep

    def low_load(self) -> dict[str, Any]:
        """The load of the low phase, as the columns of its row in the ``steps`` table name it."""
        return {"target_rate": self.low_rate, "duration": self.low_duration, "warmup": self.warmup, "mix": self.mix}


QUICK = NetworkParams(
    low_rate=100.0,
    low_duration=2.0,
    warmup=0.5,
    traced_per_op=5,
    sweep_rates=(400, 1200, 3600),
    step_duration=1.5,
    step_warmup=0.5,
)


@dataclass
class MeteredRun:
    """One load run and the resources it took; ``phase`` and ``step`` place it in the network experiment."""

    phase: str
    step: int
    result: LoadResult
    usage: dict[str, Usage]


TRACED_MIX = "each operation in turn"


class CyclingWorkload:
    """One operation after the other, each from its own single-op workload; adds a sampled traceparent."""

    def __init__(
        self, n_users: int, n_products: int, seed: int, order_ids: list[int], auth: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.workloads = {
            op: ShopWorkload(n_users, n_products, mix={op: 1.0}, seed=seed, auth_headers=auth) for op in OPS
        }
        self.workloads["order"].order_ids = order_ids
        self.cycle = itertools.cycle(OPS)
        self.trace_ids: list[str] = []

    def next_request(self) -> Request:
        request = self.workloads[next(self.cycle)].next_request()
        trace_id = tracing.new_id(16)
        self.trace_ids.append(trace_id)
        header = ("traceparent", tracing.traceparent(trace_id, tracing.new_id()))
        return replace(request, headers=(*request.headers, header))

    def on_response(self, request: Request, status: int, body: bytes) -> None:
        self.workloads[request.op].on_response(request, status, body)


def metered_run(
    url: str, pids: Mapping[str, int], workload: Any, spec: LoadSpec
) -> tuple[LoadResult, dict[str, Usage]]:
    """One load run with the CPU and peak RSS of ``pids`` metered around it (no usage at all without pids)."""
    if not pids:
        return run_load_sync(url, workload, spec), {}
    # The kernel keeps the exact peak RSS (VmHWM), so a slow sampler loses nothing and steals little from the
    # generator running in this process.
    meter = ResourceMeter(pids, interval=1.0)
    meter.start()
    try:
        result = run_load_sync(url, workload, spec)
    finally:
        usage = meter.stop()
    return result, usage


def measure(deployment: Deployed, workload: Any, spec: LoadSpec, phase: str, step: int) -> MeteredRun:
    """One load run; its processes are metered when they run here (an external target's are not)."""
    pids = deployment.supervisor.pids() if deployment.supervisor is not None else {}
    result, usage = metered_run(deployment.public_url, pids, workload, spec)
    return MeteredRun(phase, step, result, usage)


def run_topology(
    context: RunContext, topology: str, params: NetworkParams, progress: Progress
) -> dict[str, pd.DataFrame]:
    """Deploy ``topology`` (or use the context's target, already running elsewhere), run the phases, and return its
    tables.

    On a target the traced phase is skipped (the span files are on its hosts) and CPU and memory are not metered
    (NaN): the ``notes`` table says so.
    """
    seed, slo = context.seed, context.slo
    run_dir = context.runs / topology
    progress(f"{topology}: starting", 3.0)
    with running(
        context.target, lambda: deploy(topology, run_dir, seed=seed, cpus=context.sut_cpus, stack=context.stack)
    ) as deployment:
        auth = deployment.auth_headers
        workload = ShopWorkload(seed.users, seed.products, mix=params.mix, seed=seed.seed, auth_headers=auth)
        spec = LoadSpec(
            rate=params.low_rate,
            duration=params.low_duration,
            warmup=params.warmup,
            arrival=params.arrival,
            seed=seed.seed,
            expected_latency=slo.p99,
        )
        progress(f"{topology}: low load, {params.low_rate:g} req/s", params.warmup + params.low_duration)
        runs = [measure(deployment, workload, spec, "low", 0)]
        # Counted now: every process is up and has made the connections that the mix makes.
        live = live_counts(topology, deployment.supervisor.pids()) if deployment.supervisor is not None else None
        placed = placement(deployment) if isinstance(deployment, Deployment) else None

        traced: tuple[MeteredRun, CyclingWorkload] | None = None
        if deployment.run_dir is not None:  # the spans are written there
            # The edge honours a traceparent only with the harness's credential (plumbing.tracing).
            trusted = (*auth, *deployment.trace_headers)
            traced_wl = CyclingWorkload(seed.users, seed.products, seed.seed, workload.order_ids, trusted)
            count = params.traced_per_op * len(OPS)
            progress(f"{topology}: {count} traced requests", count / 50.0 + 1.0)
            traced_spec = LoadSpec(rate=50.0, duration=count / 50.0, warmup=0.0, seed=seed.seed, arrival="constant")
            traced = measure(deployment, traced_wl, traced_spec, "traced", 0), traced_wl

        def probe(rate: float) -> Judged[MeteredRun]:
            index = len(runs) - 1  # the sweep's runs so far
            progress(f"{topology}: sweep {rate:g} req/s", params.step_duration + params.step_warmup)
            spec = LoadSpec(
                rate=rate,
                duration=params.step_duration,
                warmup=params.step_warmup,
                arrival=params.arrival,
                seed=seed.seed + index,
                # Size the pool for latencies up to the SLO (Little's law): a run within the SLO never waits for a
                # connection in the generator, so a queue there means the server is past the SLO, not the client.
                expected_latency=slo.p99,
            )
            run = measure(deployment, workload, spec, "sweep", index)
            runs.append(run)
            met = slo.met(run.result.summary())
            return Judged(rate, met, "" if met else "p99 over the SLO or errors over the budget", run)

        # Past saturation every higher rate is worse: the sweep stops at the first miss, the knee is measured.
        search(probe, params.sweep_rates, misses_to_stop=1)
        spans: list[tracing.Span] = []
        if deployment.run_dir is not None:
            time.sleep(0.2)  # let the last span lines reach their files
            spans = load_spans(deployment.run_dir / "spans")
        skipped = [] if deployment.supervisor is not None else [("resources", NOT_METERED)]
    tables = tidy(topology, runs if traced is None else [*runs, traced[0]])
    # The mix of each run, so that a reader of the table knows the load (the traced run cycles through the ops).
    phases = tables[STEPS]["phase"]
    tables[STEPS] = tables[STEPS].assign(mix=phases.where(phases == "traced", params.mix).replace("traced", TRACED_MIX))
    if traced is None:
        skipped.append(("traced", "per-hop breakdown skipped: the span files are on the target's hosts"))
    else:
        tables |= hop_tables(topology, *traced, spans)
    if skipped:
        tables[NOTES] = notes(topology, "network", skipped)
    if live is not None:
        tables[COMPLEXITY_LIVE] = pd.DataFrame([live])
    if placed is not None:
        tables[PLACEMENT] = placed
    return tables


def hop_tables(
    topology: str, traced_run: MeteredRun, traced_wl: CyclingWorkload, spans: list[tracing.Span]
) -> dict[str, pd.DataFrame]:
    """The per-hop breakdown of the traced requests, from the spans their processes wrote."""
    traced_frame = traced_run.result.to_frame()
    traced = [
        (str(op), trace_id, (done - intended) * 1e6)
        for op, trace_id, done, intended in zip(
            traced_frame["op"], traced_wl.trace_ids, traced_frame["done"], traced_frame["intended"], strict=False
        )
        if not math.isnan(done)
    ]
    trace_rows, hop_rows = summarize(spans, traced)
    return {
        "traces": trace_rows.assign(topology=topology),
        "hops": hop_rows.assign(topology=topology),
        "spans": spans_frame(spans).assign(topology=topology),
    }


def tidy(topology: str, runs: Sequence[MeteredRun]) -> dict[str, pd.DataFrame]:
    """Per-request rows, one summary row per run, and one resource row per run and process."""
    requests, summaries, resources = [], [], []
    for s in runs:
        frame = s.result.to_frame()
        requests.append(frame.assign(topology=topology, phase=s.phase, step=s.step, target_rate=s.result.spec.rate))
        summary = s.result.summary()
        errors = summary.pop("errors")
        reasons = summary.pop("invalid_reasons")
        all_ok = stats.successes(frame)
        # No usage: the processes were not metered (an external target's are elsewhere): NaN, never a zero.
        metered = bool(s.usage)
        cpu_total = sum(u.cpu_seconds for u in s.usage.values())
        per_request = cpu_per_request(s.usage, all_ok)
        summaries.append(
            {
                "topology": topology,
                "phase": s.phase,
                "step": s.step,
                **summary,
                **{f"errors_{k}": v for k, v in errors.items()},
                "invalid_reasons": "; ".join(reasons),
                "successes_in_window": all_ok,
                "cpu_seconds": cpu_total if metered else math.nan,
                "cpu_per_request_us": per_request["total"] * 1e6 if metered else math.nan,
                "peak_rss_bytes": sum(u.peak_rss_bytes for u in s.usage.values()) if metered else math.nan,
            }
        )
        for process, usage in s.usage.items():
            resources.append(
                {
                    "topology": topology,
                    "phase": s.phase,
                    "step": s.step,
                    "target_rate": s.result.spec.rate,
                    "process": process,
                    "cpu_seconds": usage.cpu_seconds,
                    "cpu_per_request_us": per_request[process] * 1e6,
                    "peak_rss_bytes": usage.peak_rss_bytes,
                    "exited": usage.exited,
                }
            )
    by_op = [
        stats.per_op_summary(s.result.to_frame()).reset_index().assign(topology=topology, phase=s.phase, step=s.step)
        for s in runs
    ]
    return {
        REQUESTS: pd.concat(requests, ignore_index=True),
        STEPS: pd.DataFrame(summaries),
        RESOURCES: pd.DataFrame(resources),
        PER_OPERATION: pd.concat(by_op, ignore_index=True),
    }


def sustainable(steps: pd.DataFrame, slo: Slo) -> dict[str, float | None]:
    """Sustainable throughput per topology from the sweep rows."""
    out: dict[str, float | None] = {}
    for topology, group in steps[steps["phase"] == "sweep"].groupby("topology", sort=False):
        out[str(topology)] = stats.sustainable_throughput(group, slo.p99, slo.error_budget)
    return out


def facts(context: RunContext, tables: Tables) -> dict[str, Any]:
    """``sustainable_throughput``: topology -> the highest sweep rate that was valid and met the SLO (or None)."""
    return {"sustainable_throughput": sustainable(tables[STEPS], context.slo) if STEPS in tables else {}}


def planned_seconds(context: RunContext, params: NetworkParams) -> float:
    return len(context.topologies) * (params.planned_seconds() + 3.0)


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    keys = ("topology", "phase", "step", "target_rate")
    return [
        {"experiment": "network", **{k: row[k] for k in keys}, "reasons": row["invalid_reasons"]}
        for row in rows_where_invalid(tables, STEPS)
    ]


def summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    if STEPS not in tables:
        return None
    table = Table(title="archbench: network overhead (low load, then sweep)")
    for column in ("topology", "p50 ms", "p99 ms", "checkout p50 ms", "sustainable req/s", "CPU/req us", "peak RSS MB"):
        table.add_column(column, justify="right" if column != "topology" else "left")
    steps, ops = tables[STEPS], tables[PER_OPERATION]
    rates = meta["sustainable_throughput"]
    for topology in meta["parameters"]["topologies"]:
        low = steps[(steps["topology"] == topology) & (steps["phase"] == "low")].iloc[0]
        checkout = ops[(ops["topology"] == topology) & (ops["phase"] == "low") & (ops["op"] == "checkout")]
        sweep = steps[(steps["topology"] == topology) & (steps["phase"] == "sweep")]
        rate = rates.get(topology)
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


EXPERIMENT = Experiment(
    name="network",
    help="per-operation latency at low load, a rate sweep to the sustainable throughput, CPU and memory per "
    "process, the per-hop breakdown",
    params=NetworkParams(),
    quick=QUICK,
    on_target=True,
    uses=("seed", "products", "users", "slo_p99", "error_budget"),
    planned_seconds=planned_seconds,
    run=each_topology(run_topology),
    invalid_runs=invalid_runs,
    summary=summary,
    facts=facts,
)

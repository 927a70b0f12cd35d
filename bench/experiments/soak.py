"""The soak experiment: a steady open-loop mix for a long time, and what each process holds over that time.

For each topology: one open-loop run of the default mix at half the sustainable throughput (or a fixed rate when none
is known) for ``warmup + duration`` seconds, while a sampler thread records, every ``sample_interval`` seconds and per
process, the resident set size, the number of open file descriptors and the CPU time used so far. A process that
leaks memory, connections or files shows it as growth between the first sample after the warm-up and the last one;
the goal is under 10% (reported, never asserted: allocators and caches settle at their own pace).

Tables:

* ``soak``: one row per sample and process (topology, process, t_seconds, rss_bytes, open_fds, cpu_seconds);
* ``soak_summary``: one row per process: start and end values, growth as a fraction, and the load's request and
  error counts and validity;
* ``soak_load``: one row per sample interval: requests, errors, p50 and p99 (does latency drift over the soak?).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psutil
from rich.table import Table

from bench.common import stats
from bench.common.names import ESTIMATES, NOTES, PLACEMENT, SOAK, SOAK_LOAD, SOAK_SUMMARY, STEPS
from bench.experiments.context import RunContext
from bench.experiments.experiment import Experiment, Progress, Tables, each_topology, rows_where_invalid
from bench.experiments.network import sustainable
from bench.load.loadgen import LoadResult, LoadSpec
from bench.load.processes import run_load_sync
from bench.load.workload import ShopWorkload, StartsOnFirstRequest
from bench.system.deploy import Deployment, deploy, placement
from bench.system.target import NOT_METERED, notes, running

__all__ = [
    "EXPERIMENT",
    "GROWTH_GOAL",
    "QUICK_SOAK",
    "ProcessSampler",
    "Sample",
    "SoakParams",
    "growth",
    "load_over_time",
    "run_topology",
    "summarize",
]

GROWTH_GOAL = 0.10
"""The goal for RSS and file-descriptor growth over a soak (a fraction); the report compares against it."""


@dataclass(frozen=True, kw_only=True)
class SoakParams:
    """Durations in seconds; rates in requests per second. The seed and the catalog come from the run's context.

    The rate is ``rate`` when given, else ``rate_fraction`` of the sustainable throughput measured by the network
    experiment, else ``fallback_rate``.
    """

    duration: float = 600.0
    warmup: float = 30.0
    sample_interval: float = 5.0
    rate: float | None = None
    rate_fraction: float = 0.5
    fallback_rate: float = 200.0
    mix: str = "default"
    arrival: str = "poisson"

    def rate_for(self, sustainable: float | None) -> float:
        """The rate to soak at, given the topology's sustainable throughput (None when unknown)."""
        if self.rate is not None:
            return self.rate
        if sustainable is not None and sustainable > 0:
            return sustainable * self.rate_fraction
        return self.fallback_rate

    def planned_seconds(self) -> float:
        """The measuring time per topology (start-up excluded)."""
        return self.warmup + self.duration


QUICK_SOAK = SoakParams(duration=20.0, warmup=4.0, sample_interval=1.0)


@dataclass(frozen=True)
class Sample:
    """What one process held at one moment; ``cpu_seconds`` is user + system time since the process started."""

    process: str
    t_seconds: float
    rss_bytes: int
    open_fds: int
    cpu_seconds: float


class ProcessSampler:
    """Samples RSS, open file descriptors and CPU time of named processes on a background thread.

    The first sample is taken by :meth:`start`, then one every ``interval`` seconds until :meth:`stop`. A process
    that has gone (or is a zombie) simply yields no more samples. Each sample costs a few /proc reads per process,
    so a sampler every few seconds steals nothing measurable from a load generator in the same process.
    """

    def __init__(self, pids: Mapping[str, int], interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._interval = interval
        self._samples: list[Sample] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self) -> None:
        """Time zero: take the first sample now and start the thread."""
        if self._thread is not None:
            raise RuntimeError("ProcessSampler already started")
        self._t0 = time.monotonic()
        self._sample_all()
        self._thread = threading.Thread(target=self._run, name="archbench-soak-sampler", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def stop(self) -> list[Sample]:
        """Stop sampling; every sample taken, in time order."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        return list(self._samples)

    def _run(self) -> None:
        # Sample on a fixed grid from t0, so a slow sample does not shift every later one.
        tick = 1
        while not self._stopping.wait(max(0.0, self._t0 + tick * self._interval - time.monotonic())):
            self._sample_all()
            tick += 1

    def _sample_all(self) -> None:
        now = time.monotonic() - self._t0
        for name, process in self._processes.items():
            sample = _sample(name, process, now)
            if sample is not None:
                self._samples.append(sample)


def _sample(name: str, process: psutil.Process, t_seconds: float) -> Sample | None:
    try:
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            times = process.cpu_times()
            return Sample(
                name, t_seconds, int(process.memory_info().rss), int(process.num_fds()), times.user + times.system
            )
    except psutil.NoSuchProcess:
        return None


def run_topology(context: RunContext, topology: str, params: SoakParams, progress: Progress) -> dict[str, pd.DataFrame]:
    """Deploy ``topology`` (or use the context's target), soak it, and return its ``soak``, ``soak_summary`` and
    ``soak_load`` tables.

    The rate follows the topology's sustainable throughput when the network experiment measured it earlier in the
    run (its ``estimates``, or an older run's ``steps``, in ``context.measured``).
    """
    rate = params.rate_for(sustainable(context.measured, context.slo).get(topology))
    seed = context.seed
    progress(f"{topology}: starting", 3.0)
    with running(
        context.target,
        lambda: deploy(
            topology, context.runs / f"{topology}-soak", seed=seed, cpus=context.sut_cpus, stack=context.stack
        ),
    ) as deployment:
        workload = ShopWorkload(
            seed.users, seed.products, mix=params.mix, seed=seed.seed, auth_headers=deployment.auth_headers
        )
        spec = LoadSpec(
            rate=rate, duration=params.duration, warmup=params.warmup, arrival=params.arrival, seed=seed.seed
        )
        pids = deployment.supervisor.pids() if deployment.supervisor is not None else {}
        placed = placement(deployment) if isinstance(deployment, Deployment) else None
        sampler = ProcessSampler(pids, params.sample_interval)
        progress(f"{topology}: soak, {rate:g} req/s for {params.duration:g} s", params.planned_seconds())
        try:
            result = run_load_sync(deployment.public_url, StartsOnFirstRequest(workload, sampler.start), spec)
        finally:
            samples = sampler.stop()
    # A sample taken after the last request (connections closing) is not under load: leave it out.
    kept = [s for s in samples if s.t_seconds <= spec.warmup + spec.duration]
    frame = pd.DataFrame(kept, columns=["process", "t_seconds", "rss_bytes", "open_fds", "cpu_seconds"])
    frame.insert(0, "topology", topology)
    load = load_over_time(result, params.sample_interval).assign(topology=topology)
    if not pids:  # a target's processes are elsewhere: latency over time only
        return {SOAK_LOAD: load, NOTES: notes(topology, "soak", [("resources", NOT_METERED)])}
    tables = {
        SOAK: frame,
        SOAK_SUMMARY: summarize(frame, result, params.warmup).assign(target_rate=rate),
        SOAK_LOAD: load,
    }
    if placed is not None:
        tables[PLACEMENT] = placed
    return tables


def growth(start: float, end: float) -> float:
    """(end - start) / start; NaN when there is no start to compare with."""
    return (end - start) / start if start > 0 else math.nan


def summarize(samples: pd.DataFrame, result: LoadResult, warmup: float) -> pd.DataFrame:
    """One row per topology and process: start (first sample after ``warmup``) and end (last sample) values."""
    summary = result.summary()
    errors = sum(summary["errors"].values())
    rows = []
    for (topology, process), group in samples.groupby(["topology", "process"], sort=False):
        after = group[group["t_seconds"] >= warmup]
        if after.empty:  # too short to have a sample after the warm-up: compare from the first one
            after = group
        first, last = after.iloc[0], after.iloc[-1]
        rows.append(
            {
                "topology": topology,
                "process": process,
                "t_start": float(first["t_seconds"]),
                "t_end": float(last["t_seconds"]),
                "samples": len(group),
                "rss_start": int(first["rss_bytes"]),
                "rss_end": int(last["rss_bytes"]),
                "rss_max": int(after["rss_bytes"].max()),
                "rss_growth": growth(float(first["rss_bytes"]), float(last["rss_bytes"])),
                "fds_start": int(first["open_fds"]),
                "fds_end": int(last["open_fds"]),
                "fds_max": int(after["open_fds"].max()),
                "fds_growth": growth(float(first["open_fds"]), float(last["open_fds"])),
                "cpu_seconds": float(last["cpu_seconds"] - first["cpu_seconds"]),
                "requests": int(summary["requests"]),
                "errors": int(errors),
                "valid": bool(summary["valid"]),
                "invalid_reasons": "; ".join(summary["invalid_reasons"]),
            }
        )
    return pd.DataFrame(rows)


def load_over_time(result: LoadResult, interval: float) -> pd.DataFrame:
    """Per ``interval`` seconds of intended send time (warm-up included): requests, errors, p50 and p99."""
    frame = result.to_frame()
    bins = stats.per_interval(frame, interval, frame["error"].astype(str).to_numpy() != "")
    return bins.rename(columns={"t": "t_seconds"})[["t_seconds", "requests", "errors", "p50", "p99"]]


def planned_seconds(context: RunContext, params: SoakParams) -> float:
    return len(context.topologies) * (params.planned_seconds() + 3.0)


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    if SOAK_SUMMARY not in tables:
        return []
    runs = {SOAK_SUMMARY: tables[SOAK_SUMMARY].drop_duplicates("topology")}
    return [
        {"experiment": "soak", "topology": row["topology"], "reasons": row["invalid_reasons"]}
        for row in rows_where_invalid(runs, SOAK_SUMMARY)
    ]


def summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    if SOAK_SUMMARY not in tables:
        return None
    table = Table(title="archbench: soak (growth from the first sample after warm-up to the last; goal < 10%)")
    for column in ("topology", "process", "req/s", "RSS MB", "RSS growth", "fds", "fds growth"):
        table.add_column(column, justify="left" if column in ("topology", "process") else "right")
    for row in tables[SOAK_SUMMARY].to_dict(orient="records"):
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


EXPERIMENT = Experiment(
    name="soak",
    help=f"opt-in: RSS and open descriptors per process over a long run ({SoakParams().duration / 60:g} minutes per "
    f"topology, {QUICK_SOAK.duration:g} s with --quick)",
    params=SoakParams(),
    quick=QUICK_SOAK,
    runs_by_default=False,
    on_target=True,
    reads=(ESTIMATES, STEPS),
    uses=("seed", "products", "users", "slo_p99", "error_budget"),
    planned_seconds=planned_seconds,
    run=each_topology(run_topology),
    invalid_runs=invalid_runs,
    summary=summary,
)

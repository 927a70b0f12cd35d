"""The network-overhead experiment: what each topology costs in latency, throughput, CPU and memory.

Every topology runs side by side on the same pinned CPUs (an idle topology costs nothing measurable: the CPU of the
idle ones is metered during each trial and recorded), each deployed ``deployments`` times, and is measured in
interleaved rounds (``trials``), round ``r`` on deployment ``r mod deployments`` of every topology. Two deployments
of one topology, started the same minute, can differ near the knee by more than the rounds of one of them do
(docs/measurements.md): rounds over several deployments let the interval show that variation.

1. ``low``: rounds of the default operation mix at a low rate, each round one trial per topology in a shuffled
   order: per-operation latency, CPU per successful request. Each figure is the median over rounds with its interval,
   each ratio to the monolith is paired per round (``estimates``);
2. ``traced``: a few requests per operation with a sampled ``traceparent``: the per-hop breakdown;
3. ``sweep``: the knee. A search per topology doubles the rate until the SLO breaks, then bisects until the bracket
   is within ``within`` (10%), every topology's search interleaved with the others'; each probe is long enough to
   resolve its p99 (``probe_requests``). ``knee``: the final bracket is run again in ``recheck_rounds`` more rounds,
   and each round estimates where p99 crosses the SLO between its two ends; the sustainable throughput is the median
   of those estimates with its interval, and the bracket is reported beside it.

Going monolith -> colocated -> microservices separates the cost of splitting data and serializing (colocated) from
the cost of processes and the network (microservices).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

import pandas as pd
from rich.table import Table

from bench.common import stats
from bench.common.intervals import smallest_resolving_sample
from bench.common.machine import machine_noise
from bench.common.names import (
    COMPLEXITY_LIVE,
    ESTIMATES,
    KNEE,
    NOTES,
    PER_OPERATION,
    PLACEMENT,
    REQUESTS,
    RESOURCES,
    STEPS,
)
from bench.experiments import trials
from bench.experiments.context import RunContext, Slo
from bench.experiments.estimates import estimates
from bench.experiments.experiment import Experiment, Progress, Tables, rows_where_invalid, summary_table
from bench.load.loadgen import LoadResult, LoadSpec, Request
from bench.load.processes import run_load_sync
from bench.load.search import Judged, Search, bracketing, interleave, rising
from bench.load.workload import OPS, ShopWorkload
from bench.system.complexity import live_counts
from bench.system.deploy import Deployed, Deployment, deploy, placement
from bench.system.noise import NoiseMeter
from bench.system.resources import ResourceMeter, Usage, cpu_per_request
from bench.system.target import NOT_METERED, notes, running
from bench.system.traces import load_spans, spans_frame, summarize
from plumbing import tracing


@dataclass(frozen=True, kw_only=True)
class NetworkParams:
    """Rates in requests per second, durations in seconds. The SLO, the seed and the catalog come from the run's
    context.

    ``rounds`` low-load trials of ``low_duration`` per topology; the knee searched from ``start_rate`` (doubling, a
    rate that missed the SLO tried again up to ``miss_retries`` times before the doubling stops, then bisecting to
    within ``within``, at most ``max_probes`` probes per topology, never below ``floor_rate``), each
    probe lasting long enough for ``probe_requests`` requests (at least ``probe_duration``); the final bracket run
    again in ``recheck_rounds`` rounds, each stepping on by up to ``recheck_steps`` probes where its bracket did not
    straddle the SLO. Each topology is deployed ``deployments`` times; round ``r`` runs on deployment
    ``r mod deployments``, the search on the first. Before each trial a ``noise_probe``-second stall probe of the
    machine; a disturbed trial is run again up to ``retries`` times.
    """

    low_rate: float = 200.0
    low_duration: float = 2.0
    warmup: float = 0.5
    rounds: int = 9
    traced_per_op: int = 30
    start_rate: float = 250.0
    within: float = 0.10
    floor_rate: float = 25.0
    max_probes: int = 12
    # One probe shape for the quick run and the default: a probe's p99 depends on how long the rate was applied
    # (past capacity the queue grows for as long as the load lasts), so probes of different lengths measure
    # different knees (docs/method.md, "One probe shape").
    probe_requests: int = 1000  # p99 is then the tenth-slowest request of a probe, not its fourth (400 requests)
    probe_duration: float = 0.4
    probe_warmup: float = 0.1  # a probe's connections are open before its time zero: 0.1 s is 100 requests and more
    recheck_rounds: int = 4
    recheck_steps: int = 2
    miss_retries: int = 1
    deployments: int = 2
    retries: int = 1
    noise_probe: float = 0.2
    mix: str = "default"
    arrival: str = "poisson"

    def __post_init__(self) -> None:
        if (
            self.rounds < 1
            or self.recheck_rounds < 0
            or self.within <= 0
            or self.max_probes < 2
            or self.deployments < 1
        ):
            raise ValueError(
                "rounds >= 1, recheck_rounds >= 0, within > 0, max_probes >= 2 and deployments >= 1 are required"
            )

    def probe_seconds(self, rate: float) -> float:
        """How long a probe at ``rate`` measures: long enough for ``probe_requests`` requests."""
        return max(self.probe_duration, self.probe_requests / rate)

    def trial_seconds(self) -> float:
        """What a trial takes beside its load: its noise probe and about 0.12 s more (the meters, the generator's
        handover and time zero, the records back: 0.16-0.17 s in all with the quick run's 50 ms probe, measured)."""
        return self.noise_probe + 0.12

    def probe_trial_seconds(self, rate: float) -> float:
        """What one probe of the knee at ``rate`` takes, warm-up and trial included."""
        return self.probe_warmup + self.probe_seconds(rate) + self.trial_seconds()

    def knee_seconds(self, knees: Sequence[float]) -> float:
        """What the knee's search and re-check rounds take on topologies whose knees lie near ``knees`` (req/s)."""
        total = 0.0
        for knee in knees:
            # The search starts below the knee (SideBySide.start_rate), doubles and bisects: 5-6 probes measured, the
            # first the longest (1,000 requests at its lower rate), the others near the knee or past it.
            searching = self.probe_trial_seconds(knee / KNEE_OVER_START)
            searching += (min(self.max_probes, 6) - 1) * self.probe_trial_seconds(knee)
            recheck = self.recheck_rounds * PROBES_PER_RECHECK * self.probe_trial_seconds(knee)
            total += (searching + recheck) * (1.0 + REPEATED)
        return total

    def planned_seconds(self, topologies: int) -> float:
        """The measuring time of the experiment on ``topologies`` topologies side by side (an estimate: the knee's
        position decides how long its probes last; the experiment re-plans the knee once it knows where to start)."""
        low = self.rounds * topologies * (self.warmup + self.low_duration + self.trial_seconds()) * (1.0 + REPEATED)
        traced = topologies * (self.traced_per_op * len(OPS) / 50.0 + 1.0)
        # Measured: 0.3 s for the monolith, 1.6-2.1 s for microservices; then each one's warm-up load.
        starts = topologies * self.deployments * (1.0 + WARM_UP + 0.1)
        return starts + low + traced + self.knee_seconds([PLANNED_KNEE] * topologies)

    def low_load(self) -> dict[str, Any]:
        """The load of the low phase, as the columns of its rows in the ``steps`` table name it."""
        return {"target_rate": self.low_rate, "duration": self.low_duration, "warmup": self.warmup, "mix": self.mix}


QUICK = NetworkParams(
    low_rate=200.0,
    low_duration=1.0,
    # As long as the default's: the microservices' checkout reads slower from about half a second into a load than
    # before (4.6-5.1 against 4.1-4.6 ms a round), so a 0.2 s warm-up put the quick run's checkout ratio at
    # x5.23-5.38 where 0.5 s gave x5.89-5.91, the default's x5.86-6.03 (alternated quick network runs).
    warmup=0.5,
    rounds=4,
    traced_per_op=3,
    max_probes=8,
    recheck_rounds=2,
    recheck_steps=1,  # a re-check round of 2-3 probes; the fit takes every probe near the knee (about 2 s of 90)
    # One deployment of each topology (the default's two cost the quick run about 4 s of starts and warm-ups): three
    # quick runs with one and three with two read the sustainable-throughput ratios at x0.45-0.49 (colocated) and
    # x0.23-0.26 (microservices) either way (docs/measurements.md).
    deployments=1,
    noise_probe=0.05,  # a stall over 2 ms, or 0.25 ms lost, still shows in 50 ms
)


@dataclass
class MeteredRun:
    """One load run and the resources it took; ``phase`` and ``step`` place it in the network experiment, ``columns``
    carry what else its row of ``steps`` says (its round, the noise around it, the CPU of the idle topologies)."""

    phase: str
    step: int
    result: LoadResult
    usage: dict[str, Usage]
    columns: dict[str, Any] = field(default_factory=dict)


TRACED_MIX = "each operation in turn"
#: The knee the plan assumes before anything is measured (req/s): 1,000-5,000 on 2 cores, and a probe of 1,000
#: requests at 1,800 req/s lasts what the three topologies' probes last on average.
PLANNED_KNEE: Final = 1800.0
#: The knee over the rate the search starts from (the capacity at the low-load CPU per request): 1.2-2.3 measured.
KNEE_OVER_START: Final = 1.5
#: Probes in a re-check round: two, and steps on (3.0-3.7 measured over quick and default runs).
PROBES_PER_RECHECK: Final = 3.2
#: The share of trials the machine's noise disturbed and that were run again (5-10% measured).
REPEATED: Final = 0.07
#: Seconds of load at the low rate that each deployment of the experiment serves once started, discarded.
WARM_UP: Final = 0.3


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


class SideBySide:
    """The topologies of the run, deployed side by side (or the external target), and what the experiment measured."""

    def __init__(self, context: RunContext, params: NetworkParams, progress: Progress) -> None:
        self.context, self.params, self.progress = context, params, progress
        self.twins: dict[str, list[Deployed]] = {}  # every deployment of each topology, the first included
        self.workloads: dict[str, list[ShopWorkload]] = {}  # one per deployment: each learns its own order ids
        self.runs: dict[str, list[MeteredRun]] = {t: [] for t in context.topologies}
        self.rng = random.Random(context.seed.seed)
        self.cpus = {*context.system_cpus, *context.generator_cpus} or None
        self.new_meter = partial(NoiseMeter, self.cpus, params.noise_probe)

    def start(self, stack: ExitStack) -> None:
        """Deploy every topology ``params.deployments`` times (a target once: it is deployed already)."""
        context, seed = self.context, self.context.seed
        copies = 1 if context.target is not None else self.params.deployments
        for copy in range(copies):
            for topology in context.topologies:
                self.progress(f"{topology}: starting" + (f" deployment {copy + 1}" if copy else ""), 1.0)
                start = partial(
                    deploy,
                    topology,
                    context.runs / (f"{topology}-{copy + 1}" if copy else topology),
                    seed=seed,
                    cpus=context.sut_cpus,
                    stack=context.stack,
                )
                deployment = stack.enter_context(running(context.target, start))
                if context.target is None:
                    self.warm(deployment)
                self.twins.setdefault(topology, []).append(deployment)
                self.workloads.setdefault(topology, []).append(
                    ShopWorkload(
                        seed.users,
                        seed.products,
                        mix=self.params.mix,
                        seed=seed.seed,
                        auth_headers=deployment.auth_headers,
                    )
                )

    def warm(self, deployment: Deployed) -> None:
        """A short load at the low rate on a deployment just started, discarded (its own workload, another seed).

        The first requests a process serves pay one-time costs: the monolith's first low-load trial on each of its
        two deployments took 465-552 us of CPU a request where the next took 380-430, which put two of the quick
        run's four paired CPU ratios of colocated at x1.11-1.17 instead of about x1.5.
        """
        seed, params = self.context.seed, self.params
        workload = ShopWorkload(
            seed.users, seed.products, mix=params.mix, seed=seed.seed + 1, auth_headers=deployment.auth_headers
        )
        spec = LoadSpec(
            rate=params.low_rate,
            duration=WARM_UP,
            warmup=0.0,
            arrival=params.arrival,
            seed=seed.seed + 1,
            expected_latency=self.context.slo.p99,
        )
        run_load_sync(deployment.public_url, workload, spec)

    @property
    def deployments(self) -> dict[str, Deployed]:
        """The first deployment of each topology: its traced requests, placement and live counts."""
        return {topology: copies[0] for topology, copies in self.twins.items()}

    def shuffled(self, topologies: list[str]) -> list[str]:
        order = list(topologies)
        self.rng.shuffle(order)
        return order

    def measure(
        self, topology: str, spec: LoadSpec, phase: str, step: int, workload: Any = None, copy: int = 0
    ) -> MeteredRun:
        """One load run on deployment ``copy`` (modulo their number) of ``topology``; its processes are metered, and
        so are the idle deployments' (their CPU is recorded as ``idle_cpu_seconds``: side by side must cost the
        measured one nothing)."""
        twins = self.twins[topology]
        index = copy % len(twins)
        deployment = twins[index]
        pids: dict[str, int] = {}
        for name, copies in self.twins.items():
            for number, other in enumerate(copies):
                if other.supervisor is None:
                    continue
                own = other.supervisor.pids()
                idle = other is not deployment
                pids |= {f"{name}#{number}/{process}": pid for process, pid in own.items()} if idle else own
        result, usage = metered_run(deployment.public_url, pids, workload or self.workloads[topology][index], spec)
        idle_cpu = sum(u.cpu_seconds for name, u in usage.items() if "/" in name)
        own_usage = {name: u for name, u in usage.items() if "/" not in name}
        columns = {"idle_cpu_seconds": idle_cpu if len(pids) > len(own_usage) else math.nan, "deployment": index}
        return MeteredRun(phase, step, result, own_usage, columns)

    def kept(self, topology: str, spec: LoadSpec, phase: str, step: int, columns: Mapping[str, Any]) -> MeteredRun:
        """:meth:`measure` on the deployment of the round in ``columns`` (the first without one), repeated (bounded)
        while the machine's noise disturbs it; the kept run's row says so."""
        runs: list[MeteredRun] = []
        copy = int(columns.get("round", 0))

        def attempt(number: int) -> dict[str, Any]:
            runs.append(self.measure(topology, spec, phase, step, copy=copy))
            return {}

        row = trials.kept(attempt, self.new_meter, self.params.retries)
        run = runs[-1]
        run.columns |= dict(columns) | row
        self.runs[topology].append(run)
        return run

    def low_phase(self) -> None:
        params, seed, slo = self.params, self.context.seed, self.context.slo
        spec = LoadSpec(
            rate=params.low_rate,
            duration=params.low_duration,
            warmup=params.warmup,
            arrival=params.arrival,
            seed=seed.seed,
            expected_latency=slo.p99,
        )

        def trial(topology: str, index: int) -> dict[str, Any]:
            return {"run": self.measure(topology, spec, "low", index, copy=index)}

        def told(index: int, position: int, topology: str, attempt: int) -> None:
            again = f", again ({attempt})" if attempt > 1 else ""
            described = f"{topology}: low load, round {index + 1} of {params.rounds}{again}"
            self.progress(described, params.warmup + params.low_duration)

        plan = trials.Rounds(
            rounds=params.rounds, retries=params.retries, seed=seed.seed, probe_seconds=params.noise_probe
        )
        rows = trials.run_rounds(self.context.topologies, trial, plan, cpus=self.cpus, progress=told)
        for row in rows:  # in the order run: each topology's runs stay in their order
            run: MeteredRun = row.pop("run")
            topology = row.pop("topology")
            run.columns |= row
            self.runs[topology].append(run)

    def traced_phase(self, topology: str) -> tuple[MeteredRun, CyclingWorkload] | None:
        deployment, seed = self.deployments[topology], self.context.seed
        if deployment.run_dir is None:  # the spans are written on the target's hosts
            return None
        # The edge honours a traceparent only with the harness's credential (plumbing.tracing).
        trusted = (*deployment.auth_headers, *deployment.trace_headers)
        workload = CyclingWorkload(seed.users, seed.products, seed.seed, self.workloads[topology][0].order_ids, trusted)
        count = self.params.traced_per_op * len(OPS)
        self.progress(f"{topology}: {count} traced requests", count / 50.0 + 1.0)
        spec = LoadSpec(rate=50.0, duration=count / 50.0, warmup=0.0, seed=seed.seed, arrival="constant")
        return self.measure(topology, spec, "traced", 0, workload), workload

    def probe(self, phase: str, columns: Mapping[str, Any]) -> Callable[[str, float], Judged[MeteredRun]]:
        params, seed, slo = self.params, self.context.seed, self.context.slo

        def run(topology: str, rate: float) -> Judged[MeteredRun]:
            step = len(self.runs[topology])
            seconds = params.probe_seconds(rate)
            self.progress(f"{topology}: {phase} {rate:,.0f} req/s", params.probe_warmup + seconds)
            spec = LoadSpec(
                rate=rate,
                duration=seconds,
                warmup=params.probe_warmup,
                arrival=params.arrival,
                seed=seed.seed + step,
                # Size the pool for latencies up to the SLO (Little's law): a run within the SLO never waits for a
                # connection in the generator, so a queue there means the server is past the SLO, not the client.
                expected_latency=slo.p99,
            )
            metered = self.kept(topology, spec, phase, step, columns)
            summary = metered.result.summary()
            if slo.met(summary):
                return Judged(rate, True, "", metered)
            # A miss is tried again while doubling (one unlucky stretch should not stop it below the knee), but not
            # where the median request missed the SLO too: that is the queue of an overload, which no stall of the
            # machine explains (the doubling's overshoots at 1.5-2x the knee: p50 of 0.1-0.3 s).
            overloaded = summary["p50"] > slo.p99
            why = "p50 over the SLO: overloaded" if overloaded else "p99 over the SLO or errors over the budget"
            return Judged(rate, False, why, metered, retry=not overloaded)

        return run

    def knee(self) -> dict[str, Search[MeteredRun]]:
        """Every topology's bracketing search, interleaved, then the bracket run again in rounds."""
        params = self.params
        starts = {topology: self.start_rate(topology) for topology in self.context.topologies}
        # The plan assumed knees of PLANNED_KNEE; the low phase measured where each search starts, and so about where
        # its knee lies (on a slower machine, probes of 1,000 requests last longer).
        planned = params.knee_seconds([PLANNED_KNEE] * len(starts))
        self.progress.replan(params.knee_seconds([KNEE_OVER_START * start for start in starts.values()]) - planned)
        searches = {
            topology: Search[MeteredRun](
                rising(starts[topology], 2.0, digits=0, compound=True),
                # One miss on a minute the host took the CPU would stop the doubling below the knee, and the
                # bisection could not leave that bracket: a miss while doubling is tried again.
                retries=params.miss_retries,
                within=params.within,
                floor=params.floor_rate,
                max_runs=params.max_probes,
                digits=0,
            )
            for topology in self.context.topologies
        }
        interleave(searches, self.probe("sweep", {"round": 0}), self.shuffled)
        for index in range(1, params.recheck_rounds + 1):
            probe = self.probe("knee", {"round": index})
            for topology in self.shuffled(list(searches)):
                self.recheck(topology, searches[topology].bracket, probe)
        return searches

    def recheck(
        self,
        topology: str,
        bracket: tuple[float | None, float | None],
        probe: Callable[[str, float], Judged[MeteredRun]],
    ) -> None:
        """One re-check round of ``topology``'s knee: the search's bracket moved by a random factor (:meth:`dithered`);
        where both its probes met the SLO, or the lower one missed, the round steps on by the bracket's width (up, or
        down) until it holds a pass below a miss, at most ``recheck_steps`` probes more.

        Without the steps, a bracket the search set by one unlucky probe (a miss below the knee, on a minute the host
        took the CPU) would hold every re-check round below the knee: each would only say "at least its upper rate",
        and the median would stay at the unlucky probe.
        """
        low, high = bracket
        judged = [probe(topology, rate) for rate in self.dithered(bracket)]
        if low is None or high is None:
            return
        for _ in range(self.params.recheck_steps):
            passed, failed = bracketing(judged)
            if passed is not None and failed is not None:
                return
            if failed is None:  # every probe met the SLO: the knee is higher
                rate = max(run.rate for run in judged) * high / low
            else:  # the lowest probe missed: the knee is lower
                rate = min(run.rate for run in judged) * low / high
            judged.append(probe(topology, float(round(rate))))

    def start_rate(self, topology: str) -> float:
        """Where the knee search of ``topology`` starts: the rate its CPUs could serve at the CPU per request measured
        at low load (median over the low-load rounds), two significant digits, at least ``start_rate``.

        CPU per request at low load is higher than near the knee (each request pays its own wake-ups), so this rate
        is below the knee on every topology measured (about half of it on 2 cores); it saves the search the probes
        far below the knee, the longest ones (1,000 requests at 250 req/s take 4 s). Without a measure (a target
        whose processes are not metered) the search starts at ``start_rate``.
        """
        cpus = len(self.context.sut_cpus or ())
        per_request = [
            cpu_per_request(run.usage, stats.successes(run.result.to_frame()))["total"]
            for run in self.runs[topology]
            if run.phase == "low" and run.usage
        ]
        median = statistics.median(per_request) if per_request else math.nan
        if not (cpus and median > 0 and math.isfinite(median)):
            return self.params.start_rate
        capacity = cpus / median
        return max(self.params.start_rate, float(round(capacity, 1 - math.floor(math.log10(capacity)))))

    def dithered(self, bracket: tuple[float | None, float | None]) -> list[float]:
        """The bracket's rates for one re-check round, both moved by one random factor within half the bracket's
        width either way, in a random order.

        The search's rates lie on one ladder (doublings, then geometric midpoints), so re-checking the same two rates
        in every round would give estimates that snap to the ladder's steps: a ratio of two such estimates could move
        by a whole step (about 9% at the default ``within``) from one run to the next. Moving the bracket by a random
        factor each round spreads the probes between the steps, and the crossing interpolated in each round is no
        longer tied to them.
        """
        half = math.log1p(self.params.within) / 2
        factor = math.exp(self.rng.uniform(-half, half))
        rates = [float(round(rate * factor)) for rate in bracket if rate is not None]
        self.rng.shuffle(rates)
        return rates


def run_experiment(context: RunContext, params: NetworkParams, progress: Progress) -> dict[str, pd.DataFrame]:
    """Deploy every topology side by side (or use the context's target), measure them in interleaved rounds, and
    return the tables.

    On a target the traced phase is skipped (the span files are on its hosts) and CPU and memory are not metered
    (NaN): the ``notes`` table says so.
    """
    side = SideBySide(context, params, progress)
    tables: dict[str, list[pd.DataFrame]] = {}
    with ExitStack() as stack:
        side.start(stack)
        side.low_phase()
        extra: dict[str, dict[str, pd.DataFrame]] = {t: {} for t in context.topologies}
        traced: dict[str, tuple[MeteredRun, CyclingWorkload] | None] = {}
        for topology, deployment in side.deployments.items():
            # Counted now: every process is up and has made the connections that the mix makes.
            if deployment.supervisor is not None:
                extra[topology][COMPLEXITY_LIVE] = pd.DataFrame([live_counts(topology, deployment.supervisor.pids())])
            if isinstance(deployment, Deployment):
                extra[topology][PLACEMENT] = placement(deployment)
            traced[topology] = side.traced_phase(topology)
        searches = side.knee()
        time.sleep(0.2)  # let the last span lines reach their files
        for topology, deployment in side.deployments.items():
            found = traced[topology]
            runs = side.runs[topology]
            part = tidy(topology, runs if found is None else [*runs, found[0]])
            phases = part[STEPS]["phase"]
            part[STEPS] = part[STEPS].assign(
                mix=phases.where(phases == "traced", params.mix).replace("traced", TRACED_MIX)
            )
            skipped = [] if deployment.supervisor is not None else [("resources", NOT_METERED)]
            if found is None or deployment.run_dir is None:
                skipped.append(("traced", "per-hop breakdown skipped: the span files are on the target's hosts"))
            else:
                part |= hop_tables(topology, *found, load_spans(deployment.run_dir / "spans"))
            if skipped:
                part[NOTES] = notes(topology, "network", skipped)
            part |= extra[topology]
            part[KNEE] = knee_rows(topology, searches[topology], runs, context.slo)
            for name, frame in part.items():
                tables.setdefault(name, []).append(frame)
    merged = {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}
    slo = (context.slo.p99, context.slo.error_budget)
    merged[ESTIMATES] = estimates(merged, context.topologies, slo, context.seed.seed)
    return merged


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
                **s.columns,
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


def crossing(low: MeteredRun | None, high: MeteredRun | None, slo: Slo) -> tuple[float, str]:
    """Where p99 crosses the SLO between two probes of one round (requests per second), and whether the estimate is
    only a bound: "above" (both passed: at least the upper rate), "below" (the lower one failed: at most its rate).

    Between a passing and a failing probe the crossing is interpolated linearly in log p99; a failing probe whose
    p99 met the SLO (it failed on errors) gives the lower rate.
    """
    if low is None:
        return math.nan, ""
    low_rate, low_summary = low.result.spec.rate, low.result.summary()
    if not slo.met(low_summary):
        return low_rate, "below"
    if high is None:
        return low_rate, "above"
    high_rate, high_summary = high.result.spec.rate, high.result.summary()
    if slo.met(high_summary):
        return high_rate, "above"
    p_low, p_high = low_summary["p99"], high_summary["p99"]
    if not (0 < p_low < slo.p99 < p_high < math.inf):
        return low_rate, ""
    share = (math.log(slo.p99) - math.log(p_low)) / (math.log(p_high) - math.log(p_low))
    return low_rate + share * (high_rate - low_rate), ""


def knee_rows(topology: str, search: Search[MeteredRun], runs: Sequence[MeteredRun], slo: Slo) -> pd.DataFrame:
    """One row per round of the knee: the bracket's two probes in that round and the crossing estimated from them
    (round 0 is the search's own last probes at the bracket; a re-check round probes the bracket moved by a random
    factor, and steps on where that did not straddle the SLO: see :meth:`SideBySide.recheck`)."""
    bracket = search.bracket
    by_round: dict[int, list[MeteredRun]] = {}
    for run in runs:
        if run.phase in ("sweep", "knee"):
            by_round.setdefault(int(run.columns.get("round", 0)), []).append(run)
    rows = []
    for index, probes in sorted(by_round.items()):
        if index == 0:  # the search's own probes: those at the bracket's rates
            at = {run.result.spec.rate: run for run in probes}
            low, high = (at.get(rate) if rate is not None else None for rate in bracket)
        else:  # the round's own bracket: its highest pass below its lowest miss
            passed, failed = bracketing(Judged(r.result.spec.rate, slo.met(r.result.summary()), "", r) for r in probes)
            if passed is not None:
                low, high = passed.result, (failed.result if failed is not None else None)
            else:  # no pass: the lowest miss, a bound from above
                low, high = (failed.result if failed is not None else None), None
        estimate, bound = crossing(low, high, slo)
        rows.append(
            {
                "topology": topology,
                "round": index,
                "low_rate": low.result.spec.rate if low is not None else math.nan,
                "high_rate": high.result.spec.rate if high is not None else math.nan,
                "low_p99": low.result.summary()["p99"] if low is not None else math.nan,
                "high_p99": high.result.summary()["p99"] if high is not None else math.nan,
                "sustainable_rps": estimate,
                "bound": bound,
            }
        )
    return pd.DataFrame(rows)


def sustainable(tables: Mapping[str, pd.DataFrame], slo: Slo) -> dict[str, float | None]:
    """Sustainable throughput per topology: the median of the knee's rounds when the experiment estimated them,
    else the highest valid sweep rate that met the SLO (results of an older run)."""
    if ESTIMATES in tables:
        frame = tables[ESTIMATES]
        rows = frame[frame["figure"] == "sustainable_rps"]
        rates = dict(zip(rows["topology"].astype(str), rows["value"].astype(float), strict=True))
        return {topology: (None if math.isnan(rate) else rate) for topology, rate in rates.items()}
    steps = tables.get(STEPS)
    if steps is None:
        return {}
    out: dict[str, float | None] = {}
    for topology, group in steps[steps["phase"] == "sweep"].groupby("topology", sort=False):
        out[str(topology)] = stats.sustainable_throughput(group, slo.p99, slo.error_budget)
    return out


def facts(context: RunContext, tables: Tables) -> dict[str, Any]:
    """``sustainable_throughput``: topology -> the sustainable rate (req/s, None when no probe met the SLO);
    ``machine_noise``: how noisy the machine was over the trials (:class:`bench.common.machine.MachineNoise`), to
    compare runs by."""
    noise = machine_noise(tables[STEPS]) if STEPS in tables else None
    return {
        "sustainable_throughput": sustainable(tables, context.slo),
        **({"machine_noise": noise.as_meta()} if noise is not None else {}),
    }


def planned_seconds(context: RunContext, params: NetworkParams) -> float:
    return params.planned_seconds(len(context.topologies))


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    keys = ("topology", "phase", "step", "target_rate")
    return [
        {"experiment": "network", **{k: row[k] for k in keys}, "reasons": row["invalid_reasons"]}
        for row in rows_where_invalid(tables, STEPS)
    ]


SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("checkout_p50_ms", "checkout p50 ms"),
    ("p50_ms", "p50 ms, all ops"),
    ("p99_ms", "p99 ms, all ops"),
    ("cpu_per_request_us", "CPU/request us"),
    ("sustainable_rps", "sustainable req/s"),
)


def figure_text(value: float) -> str:
    """Three significant digits, or whole numbers with thousands separators from 100 up."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    """Each headline figure per topology: the median over rounds, its interval below it, then the ratio to the
    monolith with its interval; under 80 columns wide for the three topologies."""
    if ESTIMATES not in tables:
        return None
    frame = tables[ESTIMATES]
    topologies = list(dict.fromkeys(frame["topology"].astype(str)))
    table = summary_table("archbench: network overhead (median over rounds, interval)")
    table.add_column("figure")
    for topology in topologies:
        table.add_column(topology, justify="right", no_wrap=True)
    wide: list[str] = []  # the rows with an interval over ±10% of its median
    left_out: list[str] = []
    for figure, label in SUMMARY_ROWS:
        rows = {str(r["topology"]): r for _, r in frame[frame["figure"] == figure].iterrows()}
        if figure == "p99_ms" and not any(rows[topology]["n"] for topology in topologies):
            left_out.append(  # a row of dashes tells less than why it is empty
                f"p99 at low load: no round resolved it (a round needs {smallest_resolving_sample(99.0):,} requests)"
            )
            continue
        cells = []
        for topology in topologies:
            row = rows[topology]
            lines = estimate_lines(row, "", figure_text)
            if topology != "monolith" and row["ratio_n"]:
                lines += estimate_lines(row, "ratio_", lambda v: f"{v:.2g}", prefix="x")
            if (row["wide"] or row["ratio_wide"]) and label not in wide:
                wide.append(label)
            cells.append("\n".join(lines))
        table.add_row(label, *cells, end_section=True)
    if KNEE in tables:
        table.add_row("search bracket req/s", *(bracket_text(tables[KNEE], topology) for topology in topologies))
    fitted = frame["method"] == "fit" if "method" in frame else pd.Series(False, index=frame.index)
    medians = frame[~fitted]  # the figures over rounds (n: rounds), not those fitted to probes (n: probes)
    rounds = int(medians["n"].max()) if len(medians) else 0
    knee = medians.loc[medians["figure"] == "sustainable_rps", "n"]
    knee_rounds = f" (the knee: {int(knee.max())})" if len(knee) and int(knee.max()) != rounds else ""
    coverage = medians.loc[medians["n"] == rounds, "coverage"] if "coverage" in frame else pd.Series(dtype=float)
    covered = f" covering the median with {float(coverage.max()):.0%} confidence" if len(coverage) else ""
    params = meta.get("parameters", {}) if isinstance(meta, Mapping) else {}
    slo = params.get("slo_p99") if isinstance(params, Mapping) else None
    sustainable = f"p99 within {float(slo) * 1e3:g} ms" if isinstance(slo, int | float) else "within the SLO"
    if fitted.any():
        sustainable += (
            ", where a line fitted to the probes near the knee (log p99 on log rate) crosses it, with a 95% "
            "bootstrap interval over those probes"
        )
    steps = tables.get(STEPS)
    copies = int(steps["deployment"].nunique()) if steps is not None and "deployment" in steps else 1
    over = f" over {copies} deployments of each topology" if copies > 1 else ""
    table.caption = (
        (
            f"{rounds} rounds{knee_rounds}{over}: median, then its interval over the rounds{covered}; x: ratio to the "
            f"monolith, paired per round{' (sustainable: of the two fits)' if fitted.any() else ''}; -: no round "
            f"could carry it; sustainable: {sustainable}; search bracket: the search's own highest rate that met it "
            "and lowest that missed it"
            + (" (the fit takes the re-check rounds' probes too: it can lie outside)" if fitted.any() else "")
        )
        + "".join(f"; {why}" for why in left_out)
        + (
            f". Intervals over ±10% of their median ({'; '.join(wide)}): run again with more rounds, or on a quieter "
            "machine"
            if wide
            else ""
        )
        + (f". {noise.line()}" if steps is not None and (noise := machine_noise(steps)) else "")
    )
    return table


def bracket_text(knee: pd.DataFrame, topology: str) -> str:
    """The search's own bracket of ``topology`` (round 0 of the ``knee`` table) as "low–high", "≥ low" or "-"."""
    rows = knee[(knee["topology"] == topology) & (knee["round"] == 0)]
    if rows.empty:
        return "-"
    low, high = float(rows["low_rate"].iloc[0]), float(rows["high_rate"].iloc[0])
    if math.isnan(low):
        return "-" if math.isnan(high) else f"< {high:,.0f}"
    return f"≥ {low:,.0f}" if math.isnan(high) else f"{low:,.0f}–{high:,.0f}"


def estimate_lines(row: pd.Series, column: str, show: Callable[[float], str], prefix: str = "") -> list[str]:
    """One estimate of a row of ``estimates``: the median, then "(low–high)" when there are several rounds."""
    if not row[f"{column}n"]:
        return ["-"]
    lines = [prefix + show(float(row[f"{column}value"]))]
    if row[f"{column}n"] > 1:
        lines.append(f"({show(float(row[f'{column}low']))}–{show(float(row[f'{column}high']))})")
    return lines


EXPERIMENT = Experiment(
    name="network",
    help="per-operation latency at low load and the sustainable throughput, measured in interleaved rounds with "
    "intervals; CPU and memory per process, the per-hop breakdown",
    params=NetworkParams(),
    quick_by_default=True,
    quick=QUICK,
    on_target=True,
    scope="run",
    uses=("seed", "products", "users", "slo_p99", "error_budget"),
    planned_seconds=planned_seconds,
    run=run_experiment,
    invalid_runs=invalid_runs,
    summary=summary,
    facts=facts,
)

"""The load generator's own ceiling: the highest rate it sends validly on one core against a trivial endpoint.

Run ``python -m bench.calibration.ceiling [--json FILE]``.

Two endpoints, each in its own process pinned to the system-under-test core(s) (core 0 on a 2-core machine): a raw
uvloop protocol answering a canned HTTP/1.1 200 (cheap enough never to be the bottleneck), and a starlette hello
world on uvicorn (``python -m bench.calibration.hops serve hello``). The open-loop generator runs in generator
processes of its own (``--processes N``, default 1; ``bench.load.processes``), each pinned to one CPU: the generator
core(s) first (core 1), then, when there are more processes than generator cores, the server's (core 0 on a 2-core
machine: the endpoint and a generator process then share it, and the figure is what the machine as a whole reaches,
not what N free generator cores would). It runs at geometrically increasing rates until two rates in a row are
invalid (achieved rate under 99% of the target, or send-lag p99 over 1 ms; an invalid run is retried once, see
``--retries``); the ceiling is the highest valid rate. Against the starlette endpoint the server may saturate first,
and then that figure is the server's, not the generator's: the per-run CPU of both (in cores) tells which side limits.

If ``wrk`` is installed, each endpoint is also measured with ``wrk -t1 -c32`` on the generator core: a closed-loop
C tool's maximum throughput, for comparison. Before the sweep the generator core's timer wake-up lateness is
measured (the floor under any send lag), and each step reports the CPU that processes other than the two under
test used meanwhile ("other", in cores): on a shared machine they explain a low or missing ceiling.

Every process started here is stopped at the end, on an exception and on Ctrl-C or SIGTERM (bench.system.supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import psutil
import uvloop

from bench.common import stats
from bench.load.loadgen import MIN_ACHIEVED_SHARE, LoadSpec, PreciseTimer
from bench.load.processes import run_load_sync
from bench.load.search import Judged, highest_passing, rising, search
from bench.load.workload import HelloWorkload
from bench.system.resources import default_cpu_split, pin_self
from bench.system.supervisor import ProcessSpec, Supervisor, free_port, shutdown_on_signals

CANNED_RESPONSE: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"
ENDPOINTS: Final = ("raw", "starlette")
WRK_CONNECTIONS: Final = 32


# ---- the raw endpoint (runs in a subprocess) ------------------------------------------------------------------------


class _CannedProtocol(asyncio.Protocol):
    """Answers every request head with ``CANNED_RESPONSE``. Requests must have no body (the generator sends GETs)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports do not subclass Transport

    def data_received(self, data: bytes) -> None:
        data = self._tail + data if self._tail else data
        count = data.count(b"\r\n\r\n")
        if count:
            self._tail = data[data.rfind(b"\r\n\r\n") + 4 :]
            assert self._transport is not None
            self._transport.write(CANNED_RESPONSE * count)
        else:
            self._tail = data


async def _serve_raw(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_CannedProtocol, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


def _server_argv(endpoint: str, port: int) -> list[str]:
    if endpoint == "raw":
        return [sys.executable, "-m", "bench.calibration.ceiling", "serve-raw", "--port", str(port)]
    return [sys.executable, "-m", "bench.calibration.hops", "serve", "hello", "--port", str(port)]


# ---- measuring ------------------------------------------------------------------------------------------------------


@dataclass
class GeneratorRun:
    """One generator run of the sweep."""

    rate: float
    valid: bool
    achieved_rate: float
    send_lag_p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int
    connections: int
    generator_cpu: float  # cores: CPU time of the generator processes during the run over the run's length
    server_cpu: float  # cores
    other_cpu: float  # cores used by every other process and the kernel meanwhile
    generator_us_per_request: float  # generator CPU per request sent: 1e6 / this is its rate on a core of its own
    invalid_reasons: list[str] = field(default_factory=list)
    attempt: int = 1
    processes: int = 1


@dataclass
class EndpointResult:
    """The sweep of one endpoint, its ceiling and the wrk comparison."""

    endpoint: str
    steps: list[GeneratorRun]
    ceiling: float | None
    wrk: dict[str, Any] | None
    throughput_ceiling: float | None = None


class _CpuWindow:
    """CPU used by the generator, the server and everything else between construction and ``stop``.

    The generator is this process and its reaped children: the generator processes of the run (waited for before
    ``run_load_sync`` returns).
    """

    def __init__(self, server_pid: int) -> None:
        self._generator, self._server = psutil.Process(), psutil.Process(server_pid)
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return time.monotonic(), busy, _cpu(self._generator, children=True), _cpu(self._server)

    def stop(self) -> tuple[float, float, float]:
        """(generator, server, other) in cores, averaged over the window."""
        end = self._sample()
        wall, busy, generator, server = (b - a for a, b in zip(self._start, end, strict=True))
        return generator / wall, server / wall, max(0.0, busy - generator - server) / wall


def _cpu(process: psutil.Process, children: bool = False) -> float:
    times = process.cpu_times()
    own = float(times.user + times.system)
    return own + float(times.children_user + times.children_system) if children else own


def generator_cpus(processes: int, generator: frozenset[int], server: frozenset[int]) -> tuple[int, ...]:
    """The CPUs of ``processes`` generator processes, one each: the generator's first, then the server's."""
    order = sorted(generator) + sorted(server - generator)
    return tuple(order[: max(processes, len(generator))])


def measure_run(
    url: str,
    server_pid: int,
    rate: float,
    duration: float,
    warmup: float,
    processes: int = 1,
    cpus: tuple[int, ...] | None = None,
) -> GeneratorRun:
    """One open-loop run at ``rate`` against ``url`` from ``processes`` generator processes pinned to ``cpus``."""
    window = _CpuWindow(server_pid)
    spec = LoadSpec(rate=rate, duration=duration, warmup=warmup, processes=processes, cpus=cpus)
    result = run_load_sync(url, HelloWorkload(), spec)
    _, server, other = window.stop()
    summary = result.summary()
    # The generator's CPU during the run only: a generator process's start-up (an interpreter, numpy) is not part of
    # what it costs per request.
    generator = result.generator_cpu / (spec.warmup + spec.duration)
    sent = int(np.count_nonzero(~np.isnan(result.records["sent"])))
    return GeneratorRun(
        rate=rate,
        valid=result.valid,
        achieved_rate=summary["achieved_rate"],
        send_lag_p99_ms=summary["send_lag_p99"] * 1e3,
        latency_p50_ms=summary["p50"] * 1e3,
        latency_p99_ms=summary["p99"] * 1e3,
        errors=sum(summary["errors"].values()),
        connections=result.connections,
        generator_cpu=generator,
        server_cpu=server,
        other_cpu=other,
        generator_us_per_request=result.generator_cpu / sent * 1e6 if sent else math.nan,
        invalid_reasons=list(result.invalid_reasons),
        processes=processes,
    )


async def _timer_lateness(count: int, interval: float) -> list[float]:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    lateness: list[float] = []
    due = time.monotonic() + interval

    def fire() -> None:
        nonlocal due
        lateness.append(time.monotonic() - due)
        if len(lateness) >= count:
            finished.set_result(None)
            return
        due = time.monotonic() + interval
        timer.arm(due)

    timer = PreciseTimer(loop, fire)
    timer.arm(due)
    try:
        await finished
    finally:
        timer.close()
    return lateness


def timer_lateness(count: int = 2000, interval: float = 0.0005) -> dict[str, float]:
    """How late this core wakes the generator's timer (ms): the floor under any send lag, whatever the rate.

    On a core of its own this is tens of microseconds; when other processes compete for the core it reaches
    milliseconds, and no run can keep its send-lag p99 under 1 ms.
    """
    lateness = uvloop.run(_timer_lateness(count, interval))
    ms = stats.latency_percentiles([value * 1e3 for value in lateness])
    return {"p50": ms["p50"], "p99": ms["p99"], "max": ms["max"]}


def keeps_up(step: GeneratorRun) -> bool:
    """Whether a run sent its whole load (achieved rate at least 99% of the target, no error), send lag aside."""
    return step.achieved_rate >= MIN_ACHIEVED_SHARE * step.rate and step.errors == 0


def sweep(url: str, server_pid: int, args: argparse.Namespace) -> list[GeneratorRun]:
    """Runs at increasing rates until two rates in a row fail (or ``--max-rate``); prints each run.

    A run fails when it is invalid, or with ``--stop-on throughput`` when it does not keep up (``keeps_up``). A
    failed run is retried up to ``--retries`` times: the ceiling is what the generator can do, and on a shared
    machine one burst of someone else's work can spoil a run. Every attempt is kept and printed.
    """
    passed: Callable[[GeneratorRun], bool] = keeps_up if args.stop_on == "throughput" else generator_kept_up
    runs: list[GeneratorRun] = []

    def probe(rate: float) -> Judged[GeneratorRun]:
        run = measure_run(url, server_pid, rate, args.duration, args.warmup, args.processes, args.cpus)
        run.attempt = 1 + sum(1 for earlier in runs if earlier.rate == rate)
        runs.append(run)
        print(_format_run(run), flush=True)
        return Judged(rate, passed(run), "; ".join(run.invalid_reasons), run)

    ladder = rising(args.start, args.factor, digits=-2, maximum=args.max_rate)
    return [judged.result for judged in search(probe, ladder, misses_to_stop=2, retries=args.retries)]


def generator_kept_up(run: GeneratorRun) -> bool:
    """Whether the generator kept its schedule (a valid run) and sent the whole load: what its ceiling needs (an
    endpoint past its own knee would make a valid overload, which says nothing of the generator)."""
    return run.valid and run.achieved_rate >= MIN_ACHIEVED_SHARE * run.rate


def ceiling(runs: Sequence[GeneratorRun]) -> float | None:
    """The highest rate of a sweep at which the generator kept its schedule and sent the whole load."""
    best = highest_passing([Judged(run.rate, generator_kept_up(run), "", run) for run in runs])
    return best.rate if best is not None else None


def throughput_ceiling(runs: Sequence[GeneratorRun]) -> float | None:
    """The highest rate of a sweep that the generator kept up with, send lag aside (``keeps_up``).

    Less strict than ``ceiling``: on a shared machine other processes' bursts put the send-lag p99 over 1 ms long
    before the generator runs out of CPU, and this is the figure that still compares configurations there.
    """
    best = highest_passing([Judged(run.rate, keeps_up(run), "", run) for run in runs])
    return best.rate if best is not None else None


_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def measure_wrk(url: str, duration: float) -> dict[str, Any] | None:
    """``wrk -t1 -c32`` against ``url`` from this (pinned) process; None if wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    argv = [wrk, "-t1", f"-c{WRK_CONNECTIONS}", f"-d{max(1, math.ceil(duration))}s", "--latency", url]
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    rate = _WRK_RATE.search(output)
    return {
        "command": " ".join(["wrk", *argv[1:]]),
        "requests_per_second": float(rate.group(1)) if rate else None,
        "latency_ms": {f"p{p}": float(v) * _UNIT_MS[u] for p, v, u in _WRK_PERCENTILE.findall(output)},
    }


def measure_endpoint(sup: Supervisor, endpoint: str, args: argparse.Namespace, cpus: frozenset[int]) -> EndpointResult:
    """Start the endpoint, sweep it, compare with wrk, stop it."""
    port = free_port()
    sup.start(ProcessSpec(endpoint, _server_argv(endpoint, port), port=port, cpus=cpus, ready_path="/"))
    try:
        sup.wait_ready([endpoint])
        url = f"http://127.0.0.1:{port}/"
        print(f"\n{endpoint} endpoint at {url} (pid {sup.pid(endpoint)}, cpus {sorted(cpus)})", flush=True)
        steps = sweep(url, sup.pid(endpoint), args)
        wrk = None if args.no_wrk else measure_wrk(url, args.wrk_duration)
        result = EndpointResult(endpoint, steps, ceiling(steps), wrk, throughput_ceiling(steps))
        print(_format_endpoint(result), flush=True)
        return result
    finally:
        sup.stop(endpoint)


# ---- output ---------------------------------------------------------------------------------------------------------


def _format_run(step: GeneratorRun) -> str:
    verdict = "valid" if step.valid else "INVALID"
    retry = f" (attempt {step.attempt})" if step.attempt > 1 else ""
    line = (
        f"  {step.rate:>8.0f} req/s{retry}  {verdict:<7}  achieved {step.achieved_rate:>8.0f}  "
        f"send-lag p99 {step.send_lag_p99_ms:7.3f} ms  latency p50/p99 {step.latency_p50_ms:6.2f}/"
        f"{step.latency_p99_ms:6.2f} ms  errors {step.errors}  conns {step.connections}  "
        f"cpu gen/server/other {step.generator_cpu:.2f}/{step.server_cpu:.2f}/{step.other_cpu:.2f}  "
        f"gen {step.generator_us_per_request:.1f} us/req"
        + (f" ({step.processes} processes)" if step.processes > 1 else "")
    )
    return line if step.valid else f"{line}\n      {'; '.join(step.invalid_reasons)}"


def _format_endpoint(result: EndpointResult) -> str:
    best = f"{result.ceiling:.0f} req/s" if result.ceiling is not None else "none (no valid run)"
    kept = result.throughput_ceiling
    lines = [
        f"  ceiling ({result.endpoint}): {best}",
        f"  throughput ceiling ({result.endpoint}, send lag aside): "
        + (f"{kept:.0f} req/s" if kept is not None else "none"),
    ]
    if result.wrk is not None:
        lines.append(f"  {result.wrk['command']}: {result.wrk['requests_per_second']} req/s (closed loop)")
    return "\n".join(lines)


def _environment(server_cpus: frozenset[int], generator_cpus: frozenset[int]) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    wrk = shutil.which("wrk")
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0] if wrk else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "server_cpus": sorted(server_cpus),
        "generator_cpus": sorted(generator_cpus),
        "packages": {name: version(name) for name in ("uvloop", "httptools", "uvicorn", "starlette")},
        "wrk": wrk_version,
        "load_average_at_start": os.getloadavg(),
    }


# ---- command line ---------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS), help="comma-separated: raw,starlette")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per rate (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per rate (default 1)")
    parser.add_argument("--start", type=float, default=2000.0, help="first rate, req/s (default 2000)")
    parser.add_argument("--factor", type=float, default=1.3, help="rate multiplier between steps (default 1.3)")
    parser.add_argument("--max-rate", type=float, default=100_000.0, help="stop the sweep there (default 100000)")
    parser.add_argument("--retries", type=int, default=1, help="retries of an invalid run (default 1)")
    parser.add_argument("--wrk-duration", type=float, default=5.0, help="seconds of the wrk run (default 5)")
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk comparison")
    parser.add_argument(
        "--stop-on",
        choices=["validity", "throughput"],
        default="validity",
        help="what ends the sweep: two invalid rates in a row (default), or two the generator did not keep up with",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="generator processes sharing each load, one per CPU: the generator's, then the server's (default 1)",
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve-raw", help="(internal) run the canned-response endpoint")
    serve.add_argument("--port", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve-raw":
        uvloop.run(_serve_raw(args.port))
        return 0
    endpoints = [name.strip() for name in args.endpoints.split(",") if name.strip()]
    if unknown := set(endpoints) - set(ENDPOINTS):
        raise SystemExit(f"unknown endpoints {sorted(unknown)}; known: {', '.join(ENDPOINTS)}")
    if args.processes < 1:
        raise SystemExit("--processes must be >= 1")
    server_cpus, gen_cpus = default_cpu_split()
    if server_cpus & gen_cpus:
        print("warning: one CPU only: the server and the generator share it", file=sys.stderr)
    args.cpus = generator_cpus(args.processes, gen_cpus, server_cpus)
    if set(args.cpus) & server_cpus:
        print(
            f"warning: {args.processes} generator processes on cpus {list(args.cpus)}: some share the server's "
            f"cpus {sorted(server_cpus)}; the ceiling is the machine's, not the generator's alone",
            file=sys.stderr,
        )
    environment = _environment(server_cpus, frozenset(args.cpus))
    with (
        shutdown_on_signals(),
        tempfile.TemporaryDirectory(prefix="archbench-ceiling-") as run_dir,
        Supervisor(Path(run_dir)) as sup,
    ):
        pin_self(gen_cpus)
        environment["timer_lateness_ms"] = lateness = timer_lateness()
        print(
            f"timer wake-up lateness on cpus {sorted(gen_cpus)}: p50 {lateness['p50']:.3f} ms, "
            f"p99 {lateness['p99']:.3f} ms, max {lateness['max']:.3f} ms (the floor under the send lag)",
            flush=True,
        )
        results = [measure_endpoint(sup, endpoint, args, server_cpus) for endpoint in endpoints]
    if args.json is not None:
        document = {
            "environment": environment,
            "parameters": {k: v for k, v in vars(args).items() if k not in ("json", "command")},
            "endpoints": [asdict(result) for result in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

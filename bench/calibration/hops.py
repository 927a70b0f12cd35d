"""What ONE internal HTTP hop costs, per client stack of :mod:`plumbing.transports`.

Run ``python -m bench.calibration.hops [--stacks raw,aiohttp,...] [--duration S] [--json FILE]`` (about 50 s by
default).

Two servers run as uvicorn subprocesses (uvloop + httptools) pinned to the servers' CPUs (core 0 on two cores): a
starlette hello world, and a relay whose handler calls the hello world through a transport of the stack under test
and returns its body (with the ``asgi`` stack the relay calls an in-process hello world: no socket). A lean
keep-alive client on raw asyncio streams, pinned to the other CPUs (core 1), measures GET direct-to-hello and GET
via-relay at concurrency 1 and 32. The cost of a hop, at concurrency 1, is the difference: extra median latency
(relay - direct) and extra server CPU per request (relay + hello - hello alone), against a direct baseline measured
right before each stack. With ``asgi`` among the stacks, the in-process callers are compared too (bare app call,
our ``asgi`` stack, httpx.ASGITransport). Processes are run by :class:`bench.system.supervisor.Supervisor`: none is left
behind on exit, Ctrl-C, SIGTERM, an exception or a SIGKILL of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import psutil
import uvicorn
import uvloop
from rich.console import Console
from rich.table import Table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bench.common.stats import percentile
from bench.system.resources import ResourceMeter, default_cpu_split, pin_self
from bench.system.supervisor import ProcessSpec, ShutdownRequested, Supervisor, free_port, shutdown_on_signals
from plumbing.transports import DEFAULT_STACK, STACKS, RemoteCallError, Reply, Transport, open_transport

BUDGET_US: Final[float] = 150.0
"""The goal for one hop at low load: at most this much extra median latency and extra CPU per request
(docs/measurements.md)."""

FLOOR: Final = "floor"
BENCH_STACKS: Final = (*STACKS, FLOOR)
"""The client stacks, plus ``floor``: a relay calling through bare asyncio streams (see :class:`StreamsFloor`)."""

NOISY_CORES: Final[float] = 0.1
"""Above this mean CPU use by other processes during a phase, the run is flagged as noisy."""

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
CONCURRENCIES: Final[tuple[int, int]] = (1, 32)
_READY_TIMEOUT_S: Final[float] = 15.0

# -- the served apps -------------------------------------------------------------------------------------------------


async def _hello(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


def hello_app() -> Starlette:
    """The downstream: a starlette hello world at ``/``."""
    return Starlette(routes=[Route("/", _hello)])


def relay_app(transport: Transport) -> Starlette:
    """A relay whose ``/`` calls the downstream's ``/`` through ``transport`` and returns its body and status."""

    async def relay(request: Request) -> Response:
        try:
            reply = await transport.request("GET", "/")
        except RemoteCallError as exc:
            return PlainTextResponse(str(exc), status_code=502)
        return Response(reply.body, status_code=reply.status, media_type=reply.headers.get("content-type"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await transport.aclose()

    return Starlette(routes=[Route("/", relay)], lifespan=lifespan)


def serve(kind: str, port: int, stack: str, downstream: str) -> None:
    """Entry point of a server subprocess: uvicorn (uvloop + httptools) on 127.0.0.1:``port``.

    Pinning, process group and death with the harness are the supervisor's (:mod:`bench.system.supervisor`).
    """
    if kind == "hello":
        app = hello_app()
    elif stack == "asgi":
        app = relay_app(open_transport("asgi", "http://hello", app=hello_app()))
    elif stack == FLOOR:
        app = relay_app(StreamsFloor(urlsplit(downstream).port or 80))
    else:
        app = relay_app(open_transport(stack, downstream))
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )


def server_spec(name: str, args: Sequence[str], cpus: frozenset[int] | None) -> ProcessSpec:
    """``python -m bench.calibration.hops serve ARGS`` on a free port, ready once ``GET /`` answers 200."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.calibration.hops", "serve", *args, "--port", str(port)]
    return ProcessSpec(name, argv, port=port, cpus=cpus, ready_path="/", cwd=REPO_ROOT)


def _start(supervisor: Supervisor, spec: ProcessSpec) -> str:
    supervisor.start(spec)
    supervisor.wait_ready([spec.name], timeout=_READY_TIMEOUT_S)
    return f"http://127.0.0.1:{spec.port}"


# -- the lean load client --------------------------------------------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured load phase: where, how, and what came out."""

    target: str  # "direct" or "relay"
    stack: str | None  # for "direct": the stack whose relay phases this baseline precedes (None: not paired)
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_us: float
    p99_us: float
    cpu_us_per_req: float  # server processes only (user + system)
    foreign_cores: float  # mean CPU used by other processes of the machine meanwhile (noise), in cores


_GET_ROOT = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _get_root(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """``GET /`` on a keep-alive connection; the body of a 200 reply (anything else is a bug of the benchmark)."""
    writer.write(_GET_ROOT)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected reply: {head[:80]!r}")
    match = _CONTENT_LENGTH.search(head)
    return await reader.readexactly(int(match.group(1)) if match else 0)


async def _connection_loop(port: int, window: tuple[int, int], latencies: list[int]) -> None:
    """One keep-alive connection sending GET / back to back; keeps latencies of requests sent inside ``window``."""
    start_ns, stop_ns = window
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (sent := time.perf_counter_ns()) < stop_ns:
            await _get_root(reader, writer)
            if sent >= start_ns:
                latencies.append(time.perf_counter_ns() - sent)
    finally:
        writer.close()


class StreamsFloor:
    """The ``floor`` pseudo-stack: ``GET /`` over pooled bare asyncio streams, with no timeout, error handling,
    header parsing or URL handling. Not a usable client: the least any Python client can cost, to show how far
    each real stack is from it."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Reply:
        connection = self._idle.pop() if self._idle else await asyncio.open_connection("127.0.0.1", self._port)
        body = await _get_root(*connection)
        self._idle.append(connection)
        return Reply(200, body, {"content-type": "text/plain; charset=utf-8"})

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _measure(
    port: int, concurrency: int, warmup: float, duration: float, server_pids: Mapping[str, int]
) -> tuple[list[int], float, float, float]:
    """Closed-loop load at ``concurrency``.

    Returns latencies (ns), window seconds, server CPU seconds in the window, and the CPUs (in cores) that other
    processes of the machine used meanwhile: a measure of how noisy the figures are.
    """
    now = time.perf_counter_ns()
    window = (now + int(warmup * 1e9), now + int((warmup + duration) * 1e9))
    latencies: list[int] = []
    loops = asyncio.gather(*(_connection_loop(port, window, latencies) for _ in range(concurrency)))
    # CPU is read exactly at start and stop; the meter's RSS sampler is not needed here, so it (almost) never runs.
    meter = ResourceMeter({**server_pids, "client": os.getpid()}, interval=3600.0)
    await asyncio.sleep(warmup)
    machine_before = _machine_busy_seconds()
    meter.start()
    started = time.perf_counter()
    await asyncio.sleep(duration)
    usage = meter.stop()
    seconds = time.perf_counter() - started
    machine = _machine_busy_seconds() - machine_before
    await loops
    server_cpu = sum(u.cpu_seconds for name, u in usage.items() if name != "client")
    foreign = max(0.0, machine - server_cpu - usage["client"].cpu_seconds)
    return latencies, seconds, server_cpu, foreign / seconds


def _machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent in user and system mode (interrupts excluded: the loopback
    traffic of this very benchmark lands there)."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system)


def measure_phase(
    target: str, stack: str | None, port: int, concurrency: int, duration: float, server_pids: Mapping[str, int]
) -> Phase:
    """Measure one phase (warm-up of a fifth of ``duration``, at least 0.3 s, discarded)."""
    warmup = max(0.3, duration / 5)
    latencies, seconds, cpu, foreign = uvloop.run(_measure(port, concurrency, warmup, duration, server_pids))
    return Phase(
        target=target,
        stack=stack,
        concurrency=concurrency,
        requests=len(latencies),
        seconds=seconds,
        rps=len(latencies) / seconds,
        p50_us=percentile(latencies, 50) / 1e3,
        p99_us=percentile(latencies, 99) / 1e3,
        cpu_us_per_req=cpu / len(latencies) * 1e6,
        foreign_cores=foreign,
    )


# -- in-process ASGI callers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AsgiCallers:
    """Mean cost of one in-process call of the hello world, in microseconds."""

    bare_app_us: float  # calling the ASGI app directly, no client at all
    plumbing_asgi_us: float  # open_transport("asgi", ...)
    httpx_asgi_us: float  # httpx.AsyncClient(transport=httpx.ASGITransport(...))


async def _mean_us(call: Callable[[], Any], n: int) -> float:
    await call()
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1e6


async def _asgi_callers(n: int) -> AsgiCallers:
    app: ASGIApp = hello_app()
    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    bare = await _mean_us(lambda: app(dict(scope), receive, send), n)
    ours = open_transport("asgi", "http://hello", app=app)
    try:
        plumbing = await _mean_us(lambda: ours.request("GET", "/"), n)
    finally:
        await ours.aclose()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hello") as client:
        via_httpx = await _mean_us(lambda: client.get("/"), n // 4)
    return AsgiCallers(bare, plumbing, via_httpx)


def measure_asgi_callers(n: int = 10_000) -> AsgiCallers:
    """Compare the in-process callers the ``asgi`` stack could use (the reason it is hand-written)."""
    return uvloop.run(_asgi_callers(n))


# -- hop costs and the choice of stack -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HopCost:
    """The cost of one hop through ``stack``, derived from the phases."""

    stack: str
    extra_p50_us: float  # concurrency 1: relay median - direct median
    extra_cpu_us: float  # concurrency 1: (relay + hello) CPU per request - hello-alone CPU per request
    relay_p50_us: float  # concurrency 1
    relay_p99_us: float  # concurrency 1
    relay_rps_c1: float
    relay_rps_c32: float
    relay_p99_us_c32: float
    within_budget: bool
    noise_cores: float  # the most CPU other processes used during one of this stack's phases, in cores


def hop_costs(phases: Sequence[Phase]) -> list[HopCost]:
    """Per stack, subtract its paired direct baseline from its relay phase at low load; throughput at high load."""
    by_key = {(p.target, p.stack, p.concurrency): p for p in phases}
    low, high = CONCURRENCIES
    costs = []
    for stack in dict.fromkeys(p.stack for p in phases if p.target == "relay"):
        assert stack is not None
        direct = by_key[("direct", stack, low)]
        relay_low, relay_high = by_key[("relay", stack, low)], by_key[("relay", stack, high)]
        extra_p50 = relay_low.p50_us - direct.p50_us
        extra_cpu = relay_low.cpu_us_per_req - direct.cpu_us_per_req
        costs.append(
            HopCost(
                stack=stack,
                extra_p50_us=extra_p50,
                extra_cpu_us=extra_cpu,
                relay_p50_us=relay_low.p50_us,
                relay_p99_us=relay_low.p99_us,
                relay_rps_c1=relay_low.rps,
                relay_rps_c32=relay_high.rps,
                relay_p99_us_c32=relay_high.p99_us,
                within_budget=extra_p50 <= BUDGET_US and extra_cpu <= BUDGET_US,
                noise_cores=max(p.foreign_cores for p in (direct, relay_low, relay_high)),
            )
        )
    return costs


def recommended_stack(costs: Sequence[HopCost]) -> str | None:
    """The network stack to default to: within budget at low load, then the most req/s at concurrency 32.

    If none is within budget, the one with the smallest extra latency + CPU. Neither ``asgi`` (the colocated
    topology's caller, not a network client) nor the ``floor`` yardstick is a candidate.
    """
    network = [c for c in costs if c.stack not in ("asgi", FLOOR)]
    if not network:
        return None
    within = [c for c in network if c.within_budget]
    if within:
        return max(within, key=lambda c: c.relay_rps_c32).stack
    return min(network, key=lambda c: c.extra_p50_us + c.extra_cpu_us).stack


# -- rendering -------------------------------------------------------------------------------------------------------


def render(phases: Sequence[Phase], costs: Sequence[HopCost], callers: AsgiCallers | None, console: Console) -> None:
    """Print the per-hop table (and the in-process caller comparison) with rich."""
    low, high = CONCURRENCIES
    baselines = [p for p in phases if p.target == "direct" and p.concurrency == low]
    direct_high = next(p for p in phases if p.target == "direct" and p.concurrency == high)
    table = Table(title=f"One internal hop per client stack (budget: {BUDGET_US:.0f} us latency and CPU at c={low})")
    headers = ["stack", "+p50 us", "+CPU us", f"p50/p99 us c={low}", f"req/s c={low}", f"req/s c={high}"]
    for header in [*headers, f"p99 us c={high}", "noise", "in budget"]:
        table.add_column(header, justify="left" if header in ("stack", "in budget") else "right")
    table.add_row(
        "direct (no hop)",
        "-",
        f"({statistics.median(p.cpu_us_per_req for p in baselines):.0f}/req)",
        f"{statistics.median(p.p50_us for p in baselines):.0f} / {statistics.median(p.p99_us for p in baselines):.0f}",
        f"{statistics.median(p.rps for p in baselines):,.0f}",
        f"{direct_high.rps:,.0f}",
        f"{direct_high.p99_us:,.0f}",
        f"{max(p.foreign_cores for p in [*baselines, direct_high]):.2f}",
        "",
    )
    for cost in costs:
        table.add_row(
            cost.stack + (" (default)" if cost.stack == DEFAULT_STACK else ""),
            f"{cost.extra_p50_us:.0f}",
            f"{cost.extra_cpu_us:.0f}",
            f"{cost.relay_p50_us:.0f} / {cost.relay_p99_us:.0f}",
            f"{cost.relay_rps_c1:,.0f}",
            f"{cost.relay_rps_c32:,.0f}",
            f"{cost.relay_p99_us_c32:,.0f}",
            f"{cost.noise_cores:.2f}",
            "yes" if cost.within_budget else "NO",
        )
    console.print(table)
    console.print(
        f"+p50, +CPU: one hop's extra median latency and extra server CPU per request at c={low}, against a direct "
        "baseline measured just before each stack (direct row: median of those baselines). noise: the most CPU "
        "(in cores) other processes of the machine used during one of the row's phases."
    )
    busiest = max(phases, key=lambda p: p.foreign_cores)
    if busiest.foreign_cores > NOISY_CORES:
        console.print(
            f"[yellow]Noisy machine: other processes used up to {busiest.foreign_cores:.2f} cores during a phase "
            f"(mean {statistics.mean(p.foreign_cores for p in phases):.2f}); the figures are inflated.[/yellow]"
        )
    if callers is not None:
        console.print(
            f"In-process ASGI hop (mean per call, hello world): bare app {callers.bare_app_us:.1f} us, "
            f"plumbing 'asgi' stack {callers.plumbing_asgi_us:.1f} us, "
            f"httpx.ASGITransport {callers.httpx_asgi_us:.1f} us"
        )


def _environment(cpus: tuple[frozenset[int], frozenset[int]]) -> dict[str, Any]:
    packages = ("starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx", "httpx-aiohttp")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pinned": None if cpus[0] == cpus[1] else {"servers": sorted(cpus[0]), "client": sorted(cpus[1])},
        "packages": {name: metadata.version(name) for name in packages},
    }


# -- the command -----------------------------------------------------------------------------------------------------


def run(
    stacks: Sequence[str], duration: float, cpus: tuple[frozenset[int], frozenset[int]] | None
) -> tuple[list[Phase], AsgiCallers | None]:
    """Start the servers, measure every phase, stop everything. This process is the load client.

    ``cpus`` is (servers, client) or None for no pinning. The direct baseline at low load is measured again right
    before each stack's relay phases, so that drift (other load on the machine, frequency changes) falls on both
    sides of the subtraction.
    """
    server_cpus, client_cpus = cpus if cpus is not None else (None, None)
    pin_self(client_cpus)
    low, high = CONCURRENCIES
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="archbench-hops-") as run_dir, Supervisor(Path(run_dir)) as supervisor:
        hello = server_spec("hello", ["hello"], server_cpus)
        hello_url = _start(supervisor, hello)
        hello_pids = {"hello": supervisor.pid("hello")}
        assert hello.port is not None
        phases.append(measure_phase("direct", None, hello.port, high, duration, hello_pids))
        for stack in stacks:
            relay = server_spec(f"relay-{stack}", ["relay", "--stack", stack, "--downstream", hello_url], server_cpus)
            _start(supervisor, relay)
            assert relay.port is not None
            pids = {**hello_pids, "relay": supervisor.pid(relay.name)}
            phases.append(measure_phase("direct", stack, hello.port, low, duration, hello_pids))
            for concurrency in CONCURRENCIES:
                phases.append(measure_phase("relay", stack, relay.port, concurrency, duration, pids))
            supervisor.stop(relay.name)
    callers = measure_asgi_callers() if "asgi" in stacks else None
    return phases, callers


def _stack_list(text: str) -> list[str]:
    stacks = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stacks if s not in BENCH_STACKS]
    if unknown or not stacks:
        raise argparse.ArgumentTypeError(f"unknown stack(s) {unknown}; valid: {', '.join(BENCH_STACKS)}")
    return stacks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration.hops", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stacks",
        type=_stack_list,
        default=list(BENCH_STACKS),
        help=f"comma-separated, among {', '.join(BENCH_STACKS)} (default: all)",
    )
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per phase (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    commands = parser.add_subparsers(dest="command")
    server = commands.add_parser("serve", help="(internal) run one server of the benchmark")
    server.add_argument("kind", choices=["hello", "relay"])
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--stack", choices=BENCH_STACKS, default=DEFAULT_STACK)
    server.add_argument("--downstream", default="")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        serve(args.kind, args.port, args.stack, args.downstream)
        return 0
    console = Console(width=max(120, shutil.get_terminal_size().columns))
    cpus = default_cpu_split()
    if cpus[0] == cpus[1]:
        console.print("[yellow]one CPU only: servers and client are not pinned and share it[/yellow]")
    try:
        with shutdown_on_signals():
            phases, callers = run(args.stacks, args.duration, None if cpus[0] == cpus[1] else cpus)
    except ShutdownRequested as stop:
        console.print(f"interrupted ({stop}); every server was stopped")
        return 128 + stop.signum
    costs = hop_costs(phases)
    render(phases, costs, callers, console)
    best = recommended_stack(costs)
    console.print(f"DEFAULT_STACK = {DEFAULT_STACK!r}; recommended by this run: {best!r}")
    if args.json is not None:
        document = {
            "environment": _environment(cpus),
            "parameters": {"stacks": args.stacks, "duration_s": args.duration, "concurrencies": CONCURRENCIES},
            "phases": [asdict(p) for p in phases],
            "hops": [asdict(c) for c in costs],
            "asgi_callers": asdict(callers) if callers is not None else None,
            "default_stack": DEFAULT_STACK,
            "recommended_stack": best,
            "noisy": any(p.foreign_cores > NOISY_CORES for p in phases),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

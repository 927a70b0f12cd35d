"""Open-loop HTTP/1.1 load generator.

Requests are scheduled at a target rate (constant or seeded Poisson arrivals) and every latency is measured from the
request's INTENDED send time, so a server that stalls is charged for every request it delayed, including the ones
the generator could not send yet (no coordinated omission).

Why a hand-written client: no Python HTTP library does open-loop at the cost we need. On the 2-core development
machine, as a generator against a starlette hello world, raw asyncio streams reached about 11.8k req/s, aiohttp
6.7k and httpx 0.5k (docs/measurements.md); the goal is >= 20k req/s on one pinned core. So each connection is an
``asyncio.Protocol`` that writes pre-encoded request bytes and feeds the response to httptools' C parser, one
scheduler callback dispatches every request that is due (no task or timer per request), and a single periodic sweep
enforces timeouts. ``python -m bench.calibration.ceiling`` measures what this reaches.

``run_load_sync`` runs this engine in generator processes of its own, pinned, with nothing else in them
(``bench.load.processes``), when the workload can describe itself (``RemoteWorkload``); several processes can share
one load. Responses are framed as the inter-service client frames them (``plumbing.framing``).

Per request the result keeps (all times in seconds on a monotonic clock, relative to the run start):

* ``op``: the workload's operation name;
* ``intended``: when the schedule said to send it;
* ``dispatched``: when the scheduler got to it (``dispatched - intended`` is the generator's own lag);
* ``sent``: when it was handed to a connection: written at once on an open keep-alive connection, or the moment a
  (re)connect for it started. ``sent - dispatched`` is time spent queued for a free connection; NaN if it never
  left the queue (it timed out there);
* ``done``: when the response completed or the request failed;
* ``status``: the HTTP status, 0 if there was none;
* ``error``: one of ``ERROR_CLASSES``: "" (a response below 400), "refused", "reset" (connection lost or a response
  that does not parse), "timeout" (no response within ``timeout`` of the intended time), "4xx", "5xx";
* ``unanswered``: True for a failed request of which no byte of a reply came back, on a kept-alive connection that
  had carried earlier requests (the server closed it as the request was written: a client that retries such
  requests, when they are safe to repeat, would not have seen the failure);
* ``warmup``: True for requests intended before ``spec.warmup``. They are kept in the records (marked, not deleted)
  and excluded from every summary and validity check.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import math
import os
import socket
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit

import httptools
import numpy as np
import numpy.typing as npt

from bench.common.names import ERROR_CLASSES
from plumbing.framing import is_interim, response_has_body

if TYPE_CHECKING:  # pandas and the statistics are imported where used: a generator process never needs them
    import pandas as pd

    from bench.load.validity import Judgement

_OK, _REFUSED, _RESET, _TIMEOUT, _E4XX, _E5XX = range(len(ERROR_CLASSES))

#: A run "sent in full" when it sent at least this share of the requests its schedule offered in the measured window.
MIN_ACHIEVED_SHARE: Final = 0.99
#: How late a request may be sent and still count as sent in the window (seconds).
MAX_SEND_LAG_P99: Final = 0.001

#: Connection pool sizing: Little's law (rate x expected latency) times this headroom, clamped to [MIN, MAX].
POOL_HEADROOM: Final = 4.0
MIN_CONNECTIONS: Final = 4
MAX_CONNECTIONS: Final = 256

# When the next request is due sooner than this, the scheduler runs again at the next loop iteration instead of
# arming the precise timer (a timerfd costs two system calls per wake-up).
_SOON: Final = 20e-6
# Before a request due after a long idle (over _WAKE_EARLY_AFTER), the timer fires _WAKE_EARLY ahead of it and the
# scheduler polls the loop until it is due. A CPU left idle for milliseconds takes 60-100 us to wake on these VMs
# (up to 0.4 ms; the ``noise_wakeup_*`` columns measure it around every trial), which at 200 req/s made the
# generator's own lag over 10% of a 0.6 ms p50 and voided the monolith's low-load percentiles in most rounds. Polling
# only before a long idle costs 0.2 ms per request at low rates (4% of a core at 200 req/s) and nothing from
# 1,000 req/s up, where polling between every request would take the core the kernel needs for loopback.
_WAKE_EARLY: Final = 200e-6
_WAKE_EARLY_AFTER: Final = 1e-3
# At most this many requests are dispatched per scheduler callback, so that a generator falling behind still lets
# responses be read between batches.
_MAX_BATCH: Final = 64


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as a workload describes it; ``op`` labels it in the results."""

    op: str
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class Workload(Protocol):
    """What the generator asks for each request it sends, and tells about each one that finished."""

    def next_request(self) -> Request:
        """The next request to send; called at the request's send time, so it may depend on earlier responses."""
        ...

    def on_response(self, request: Request, status: int, body: bytes) -> None:
        """Called once per finished request; ``status`` is 0 and ``body`` empty if there was no response."""
        ...


class WorkloadSource(Protocol):
    """A small picklable description of a workload, from which a generator process builds its own copy.

    ``build(part, parts)`` makes the workload of generator process ``part`` of ``parts`` (each sends every
    ``parts``-th request of the schedule); ``outcome(workload)`` is what that process sends back about the workload
    once the run is over (picklable, small: say the ids it learnt), for ``RemoteWorkload.absorb``.
    """

    def build(self, part: int, parts: int) -> Workload:
        """The workload of generator process ``part`` (0-based) of ``parts``."""
        ...

    def outcome(self, workload: Workload) -> object:
        """What the parent's workload should learn from this process's run."""
        ...


@runtime_checkable
class RemoteWorkload(Protocol):
    """A workload that can run in generator processes: it describes itself and absorbs what they learnt.

    ``run_load_sync`` runs such a workload in generator processes of their own (``bench.load.processes``) and any
    other workload in this interpreter.
    """

    def describe(self, parts: int) -> WorkloadSource | None:
        """A description for ``parts`` generator processes, or None if this one cannot leave the interpreter.

        Describing may advance the workload's own state, as a run would.
        """
        ...

    def absorb(self, outcomes: list[object]) -> None:
        """Take in the processes' outcomes (in process order) once the run is over."""
        ...

    def load_started(self, t0: float) -> None:
        """Called in the harness at the load's time zero ``t0`` (a ``time.monotonic()`` value, system-wide)."""
        ...


@dataclass(frozen=True)
class LoadSpec:
    """What load to offer.

    ``rate`` requests per second for ``warmup + duration`` seconds; the first ``warmup`` seconds are recorded but
    excluded from summaries. ``arrival`` is "constant" (evenly spaced) or "poisson" (exponential gaps drawn from
    ``seed``). ``timeout`` is counted from the intended send time. ``connections`` fixes the pool size; by default
    it is sized from ``rate`` and ``expected_latency`` (see ``pool_size``).

    ``processes`` generator processes share the load (``bench.load.processes``): each sends every
    ``processes``-th request of the one schedule over its share of the connections. ``cpus`` are the CPUs they are
    pinned to (one each, round robin, when there are at most as many CPUs as processes; else each gets its share of
    the CPUs); by default those the calling process may run on.
    """

    rate: float
    duration: float
    warmup: float = 1.0
    arrival: str = "constant"
    seed: int = 0
    timeout: float = 5.0
    connections: int | None = None
    expected_latency: float = 0.05  # sized for latencies up to the default SLO: see pool_size
    processes: int = 1
    cpus: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.duration > 0 and self.warmup >= 0 and self.timeout > 0):
            raise ValueError(f"rate, duration and timeout must be > 0 and warmup >= 0: {self}")
        if self.arrival not in ("constant", "poisson"):
            raise ValueError(f"arrival must be 'constant' or 'poisson', not {self.arrival!r}")
        if self.connections is not None and self.connections < 1:
            raise ValueError(f"connections must be >= 1: {self.connections}")
        if self.processes < 1:
            raise ValueError(f"processes must be >= 1: {self.processes}")
        if self.cpus is not None and not self.cpus:
            raise ValueError("cpus must name at least one CPU (or be None)")


def pool_size(spec: LoadSpec) -> int:
    """Connections to keep open: Little's law with headroom, clamped; ``spec.connections`` when it is given."""
    if spec.connections is not None:
        return spec.connections
    wanted = math.ceil(spec.rate * spec.expected_latency * POOL_HEADROOM)
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, wanted))


def schedule(spec: LoadSpec) -> npt.NDArray[np.float64]:
    """Intended send times (seconds from the run start) for the whole run, warm-up included."""
    total = spec.warmup + spec.duration
    if spec.arrival == "constant":
        return np.arange(math.ceil(total * spec.rate - 1e-9), dtype=np.float64) / spec.rate
    # Exponential gaps from the seed; the first arrival is at 0 so that a run starts at once. Draw enough gaps to
    # cover the run with overwhelming probability, then top up if not.
    rng = np.random.default_rng(spec.seed)
    count = int(total * spec.rate + 10 * math.sqrt(total * spec.rate) + 10)
    times = np.concatenate([[0.0], np.cumsum(rng.exponential(1.0 / spec.rate, count))])
    while times[-1] < total:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / spec.rate, count))])
    arrivals: npt.NDArray[np.float64] = times[times < total]
    return arrivals


def encode_request(request: Request, host: str) -> bytes:
    """The request's HTTP/1.1 bytes, keep-alive, with Host and (when there is a body or a POST) Content-Length."""
    head = [f"{request.method} {request.path} HTTP/1.1\r\nHost: {host}\r\n"]
    head.extend(f"{name}: {value}\r\n" for name, value in request.headers)
    if request.body or request.method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(request.body)}\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1") + request.body


@dataclass
class LoadResult:
    """Per-request records of one run, with its validity and summary.

    ``records`` maps column name to a numpy array, one element per scheduled request, in schedule order: op,
    intended, dispatched, sent, done, status, error, warmup (see the module docstring). ``connections`` counts those
    of every generator process; ``t0`` is the run's time zero as a ``time.monotonic()`` value (CLOCK_MONOTONIC,
    the same in every process of the machine), NaN when unknown. ``generator_cpu`` is the CPU time (seconds) the
    generator used from ``t0`` to the end of the run, summed over its processes (in the harness's own interpreter,
    that of the whole process: other threads included); NaN when unknown.
    """

    spec: LoadSpec
    records: dict[str, npt.NDArray[Any]]
    connections: int
    workload_error: str | None = None
    t0: float = math.nan
    generator_cpu: float = math.nan

    def to_frame(self) -> pd.DataFrame:
        """The records as a DataFrame (op and error categorical), one row per request."""
        import pandas as pd

        frame = pd.DataFrame(self.records)
        frame["op"] = frame["op"].astype("category")
        frame["error"] = pd.Categorical(frame["error"], categories=list(ERROR_CLASSES))
        return frame

    @cached_property
    def _measured(self) -> npt.NDArray[np.bool_]:
        return ~self.records["warmup"]

    @property
    def window_end(self) -> float:
        """End of the measured window (seconds from the run start)."""
        return self.spec.warmup + self.spec.duration

    @cached_property
    def offered_rate(self) -> float:
        """Requests per second the schedule offered in the measured window (differs from ``rate`` under Poisson)."""
        return int(self._measured.sum()) / self.spec.duration

    @cached_property
    def achieved_rate(self) -> float:
        """Measured requests actually sent by the end of the window (plus the tolerated lag), per second."""
        sent = self.records["sent"][self._measured]
        on_time = np.count_nonzero(sent <= self.window_end + MAX_SEND_LAG_P99)
        return float(on_time / self.spec.duration)

    @cached_property
    def send_lags(self) -> npt.NDArray[np.float64]:
        """``sent - intended`` per measured request; a request never sent counts with ``done - intended``."""
        rec = self.records
        sent = np.where(np.isnan(rec["sent"]), rec["done"], rec["sent"])
        lags: npt.NDArray[np.float64] = (sent - rec["intended"])[self._measured]
        return lags

    @property
    def send_lag_p99(self) -> float:
        """p99 of the send lag (seconds); NaN without measured requests."""
        from bench.common import stats

        return stats.percentile(self.send_lags, 99.0)

    @cached_property
    def judgement(self) -> Judgement:
        """What the run's figures are worth (:func:`bench.load.validity.judge`): the percentiles the generator's own
        lag voids, whether it was an overload, and why it is invalid, if it is."""
        from bench.load.validity import judge  # with the statistics: never imported by a generator process

        rec, measured = self.records, self._measured
        columns = (rec[name][measured] for name in ("intended", "dispatched", "sent", "done"))
        return judge(*columns)

    @cached_property
    def invalid_reasons(self) -> list[str]:
        """Why this run must not be used as a measurement; empty when it is valid. A run past the knee (requests
        waited for connections) is a measured overload, not an invalid run (:attr:`judgement`)."""
        if self.workload_error is not None:
            return [f"the workload raised: {self.workload_error}"]
        return list(self.judgement.reasons)

    @property
    def sent_in_full(self) -> bool:
        """Whether the generator sent at least :data:`MIN_ACHIEVED_SHARE` of the offered requests on time."""
        return self.achieved_rate >= MIN_ACHIEVED_SHARE * self.offered_rate

    @property
    def _scheduler_lags(self) -> npt.NDArray[np.float64]:
        lags: npt.NDArray[np.float64] = (self.records["dispatched"] - self.records["intended"])[self._measured]
        return lags

    @property
    def valid(self) -> bool:
        """True only when ``invalid_reasons`` is empty."""
        return not self.invalid_reasons

    def summary(self) -> dict[str, Any]:
        """Plain-data summary of the measured window: rates, send lag, latency percentiles, errors, validity."""
        from bench.common import stats

        frame = stats.measured(self.to_frame())
        errors = stats.error_counts(frame)
        count = len(frame)
        failed = sum(errors.values())
        return {
            "target_rate": self.spec.rate,
            "arrival": self.spec.arrival,
            "duration": self.spec.duration,
            "warmup": self.spec.warmup,
            "connections": self.connections,
            "requests": count,
            "offered_rate": self.offered_rate,
            "achieved_rate": self.achieved_rate,
            "ok_throughput": (count - failed) / self.spec.duration,
            "send_lag_p50": stats.percentile(self.send_lags, 50.0),
            "send_lag_p99": self.send_lag_p99,
            "send_lag_max": stats.percentile(self.send_lags, 100.0),
            "scheduler_lag_p99": stats.percentile(self._scheduler_lags, 99.0),
            **stats.latency_percentiles(stats.latencies(frame)),
            "errors": errors,
            "error_rate": failed / count if count else math.nan,
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            **self.judgement.columns(),
        }


class _Conn(asyncio.Protocol):
    """One keep-alive connection, carrying at most one request at a time (no pipelining).

    Responses are framed as the inter-service client frames them (``plumbing.framing``): an interim 1xx is skipped,
    and a response without a body (to HEAD; a 204, a 304) ends with its head. The parser cannot know that a reply to
    HEAD has no body, so after one the connection continues with a fresh parser.
    """

    __slots__ = (
        "_answered",
        "_body",
        "_fresh_parser",
        "_parser",
        "_run",
        "_served",
        "_transport",
        "closed",
        "index",
        "request",
    )

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._fresh_parser = False
        self._body: list[bytes] = []
        self._served = 0  # requests this connection completed
        self._answered = False  # whether a byte of the reply to the request in flight arrived
        self.index = -1
        self.request: Request | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def start(self, index: int, request: Request, payload: bytes) -> None:
        """Send one request on this (open, idle) connection."""
        self.index = index
        self.request = request
        self._answered = False
        assert self._transport is not None
        self._transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._break(_RESET)
        if self._fresh_parser:
            # The message ended at its head while the parser still waits for a body that will not come.
            self._fresh_parser = False
            self._parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        request = self.request
        if request is None or self._fresh_parser:
            return
        status = self._parser.get_status_code()
        if not is_interim(status) and not response_has_body(request.method, status):
            self._fresh_parser = True  # the rest of this message (if the parser sees any) is not ours
            self._complete(status, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if not self._fresh_parser:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._fresh_parser:  # already completed at its head
            return
        status = self._parser.get_status_code()
        if is_interim(status):  # a 100 Continue or the like: the final response follows
            return
        if self.request is None:  # a response nobody asked for: the connection is out of step
            self._break(_RESET)
            return
        self._complete(status, self._parser.should_keep_alive())

    def _complete(self, status: int, keep_alive: bool) -> None:
        index, request = self.index, self.request
        assert request is not None
        body = b"".join(self._body)
        self._body.clear()
        self.index, self.request = -1, None
        self._served += 1
        self._run.finish(index, request, status, body, _OK)
        if keep_alive:
            self._run.release(self)
        else:
            self.close()
            self._run.release(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._break(_RESET)

    def give_up(self, error: int) -> None:
        """Fail the request in flight (if any) with ``error`` and drop the connection; its slot is freed."""
        self._break(error)

    def _break(self, error: int) -> None:
        index, request = self.index, self.request
        was_busy = request is not None
        self.index, self.request = -1, None
        self.close()
        if was_busy:
            assert request is not None
            # Nothing of the reply came back on a connection that had carried earlier requests: the server may have
            # closed it as idle just as the request was written (a graceful stop does), and a client that retries
            # such requests would have absorbed this failure.
            unanswered = self._served > 0 and not self._answered
            self._run.finish(index, request, 0, b"", error, unanswered=unanswered)
            self._run.release(None)
        # An idle connection stays in the idle list, marked closed; whoever takes it reconnects.

    def close(self) -> None:
        """Abort the transport (idempotent)."""
        self.closed = True
        self._run.connections.discard(self)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None


class _TimerSpec(ctypes.Structure):
    _fields_ = (
        ("interval_sec", ctypes.c_long),
        ("interval_nsec", ctypes.c_long),
        ("value_sec", ctypes.c_long),
        ("value_nsec", ctypes.c_long),
    )


_CLOCK_MONOTONIC: Final = 1  # what time.monotonic() reads on Linux
_TFD_TIMER_ABSTIME: Final = 1


def _load_timerfd() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """libc's timerfd_create and timerfd_settime (Linux), or None. Python has them in ``os`` only from 3.13."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_TimerSpec), ctypes.c_void_p]
    settime.restype = ctypes.c_int
    return create, settime


_TIMERFD: Final = _load_timerfd()


class PreciseTimer:
    """A one-shot timer with microsecond precision that wakes the event loop without busy-waiting.

    Event-loop timers have millisecond granularity (libuv's clock, epoll's timeout), which alone would put the send
    lag anywhere in 0..1 ms, and polling with call_soon until a request is due burns the core that the kernel also
    needs for loopback packet processing (tried: lag spikes of 10-20 ms, and of seconds at nice -20). A
    Linux timerfd armed at an absolute CLOCK_MONOTONIC time and watched by the loop like a socket has neither
    problem. Where there is no timerfd, this falls back to ``loop.call_at`` (millisecond precision).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop, self._callback = loop, callback
        self._fd = -1
        self._handle: asyncio.TimerHandle | None = None
        self._spec = _TimerSpec()
        self._settime: Callable[..., int] | None = None
        if _TIMERFD is not None:
            create, settime = _TIMERFD
            fd = create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self._fd, self._settime = fd, settime
                loop.add_reader(fd, self._fired)

    @property
    def precise(self) -> bool:
        """True when backed by a timerfd."""
        return self._fd >= 0

    def arm(self, when: float) -> None:
        """Call the callback once at ``when`` (a ``time.monotonic()`` value); replaces any earlier arming."""
        if self._settime is None:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(self._loop.time() + when - time.monotonic(), self._callback)
            return
        seconds = math.floor(when)
        # A zero it_value would disarm the timer, hence at least 1 ns.
        self._spec.value_sec, self._spec.value_nsec = seconds, max(1, int((when - seconds) * 1e9))
        self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:  # re-armed after it became readable: the new arming has not expired yet
            return
        self._callback()

    def close(self) -> None:
        """Stop watching and release the timer."""
        if self._handle is not None:
            self._handle.cancel()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd, self._settime = -1, None


def _classify_connect_error(exc: OSError) -> int:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return _REFUSED
    if isinstance(exc, TimeoutError):
        return _TIMEOUT
    return _RESET


def _status_class(status: int) -> int:
    if status >= 500:
        return _E5XX
    return _E4XX if status >= 400 else _OK


# Where a request is: on a connection, or waiting for its connection to open.
_InFlight = tuple[_Conn | None, Request]


class _Run:
    """The engine of one run: schedule, connection pool, waiting queue, timeout sweep and the records.

    With ``parts`` > 1 it plays the requests ``part``, ``part + parts``, ... of the schedule (its share of a load
    that several generator processes play together); its columns then hold those requests only, in that order.
    """

    def __init__(
        self, address: tuple[str, int], host: str, workload: Workload, spec: LoadSpec, part: int = 0, parts: int = 1
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.address, self.host, self.workload, self.spec = address, host, workload, spec
        # Per-request columns are array.array, not lists: the garbage collector never walks them (a list of 100k
        # floats costs every collection that visits it about a millisecond).
        self.intended = array("d", schedule(spec)[part::parts].tobytes())
        n = len(self.intended)
        self.ops = array("i", bytes(4 * n))
        self.op_names: dict[str, int] = {}
        self.dispatched = array("d", [math.nan]) * n
        self.sent = array("d", [math.nan]) * n
        self.done = array("d", [math.nan]) * n
        self.status = array("h", bytes(2 * n))
        self.error = array("b", bytes(n))  # _OK is 0
        self.unanswered = array("b", bytes(n))
        self.next_index = 0
        # Free slots (None = no connection yet), used oldest first: each request goes out on the connection idle the
        # longest, as if from one of many independent users. A LIFO pool would put a light load on a few hot
        # connections, and a server whose workers or replicas share a port (the kernel spreads connections, not
        # requests) would then see it on one worker only.
        self.idle: deque[_Conn | None] = deque()
        self.queue: deque[tuple[int, Request, bytes]] = deque()
        self.inflight: dict[int, _InFlight] = {}  # insertion order = index order (sends happen in order)
        self.connections: set[_Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.t0 = 0.0
        self.cpu_used = math.nan  # CPU seconds from t0 to the end of the run
        self.workload_error: str | None = None
        self._last_request: Request | None = None
        self._last_payload = b""
        self._tick_soon = False
        self._poll_for = -1  # the request the scheduler woke early for (see _WAKE_EARLY)
        self.timer = PreciseTimer(self.loop, self.tick)

    # ---- connections -------------------------------------------------------------------------------------------
    async def _connect(self) -> _Conn:
        _, conn = await self.loop.create_connection(lambda: _Conn(self), *self.address)
        self.connections.add(conn)
        return conn

    async def open_pool(self, size: int) -> None:
        """Open ``size`` connections before the clock starts; a slot that fails to connect is kept empty."""
        results = await asyncio.gather(*(self._connect() for _ in range(size)), return_exceptions=True)
        self.idle = deque(conn if isinstance(conn, _Conn) else None for conn in results)

    async def _open_for(self, index: int, request: Request, payload: bytes) -> None:
        try:
            conn = await self._connect()
        except OSError as exc:
            if index in self.inflight:
                self.finish(index, request, 0, b"", _classify_connect_error(exc))
            self.release(None)
            return
        if index not in self.inflight:  # it timed out while connecting: keep the connection for the next one
            self.release(conn)
        elif conn.closed:  # lost before we could use it
            self.finish(index, request, 0, b"", _RESET)
            self.release(None)
        else:
            self.inflight[index] = (conn, request)
            conn.start(index, request, payload)

    def _send(self, index: int, request: Request, payload: bytes, slot: _Conn | None) -> None:
        self.sent[index] = time.monotonic() - self.t0
        if slot is None or slot.closed:
            self.inflight[index] = (None, request)
            task = self.loop.create_task(self._open_for(index, request, payload))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            self.inflight[index] = (slot, request)
            slot.start(index, request, payload)

    def release(self, slot: _Conn | None) -> None:
        """A slot became free: give it the oldest waiting request that has not expired, else make it idle."""
        queue = self.queue
        while queue:
            index, request, payload = queue.popleft()
            if self.intended[index] + self.spec.timeout <= time.monotonic() - self.t0:
                self.finish(index, request, 0, b"", _TIMEOUT)
                continue
            self._send(index, request, payload, slot)
            return
        self.idle.append(slot)

    # ---- records -----------------------------------------------------------------------------------------------
    def finish(
        self, index: int, request: Request, status: int, body: bytes, error: int, *, unanswered: bool = False
    ) -> None:
        """Record the outcome of request ``index`` and tell the workload."""
        self.done[index] = time.monotonic() - self.t0
        self.status[index] = status
        self.error[index] = error if error != _OK else _status_class(status)
        self.unanswered[index] = unanswered
        self.inflight.pop(index, None)
        try:
            self.workload.on_response(request, status, body)
        except Exception as exc:
            self._abort(f"on_response: {exc!r}")
        self._check_finished()

    def _check_finished(self) -> None:
        idle = self.next_index >= len(self.intended) and not self.inflight and not self.queue
        if idle and not self.finished.done():
            self.finished.set_result(None)

    def _abort(self, why: str) -> None:
        if self.workload_error is None:
            self.workload_error = why
        if not self.finished.done():
            self.finished.set_result(None)

    # ---- scheduling --------------------------------------------------------------------------------------------
    def _encode(self, request: Request) -> bytes:
        # Workloads often hand out the same Request object again (a fixed endpoint): encode it once.
        if request is not self._last_request:
            self._last_request, self._last_payload = request, encode_request(request, self.host)
        return self._last_payload

    def _op_code(self, op: str) -> int:
        code = self.op_names.get(op)
        if code is None:
            code = self.op_names[op] = len(self.op_names)
        return code

    def _dispatch(self, index: int) -> bool:
        """Send (or queue) request ``index``; False if the workload raised, which aborts the run."""
        try:
            request = self.workload.next_request()
        except Exception as exc:
            self._abort(f"next_request: {exc!r}")
            return False
        self.dispatched[index] = time.monotonic() - self.t0
        self.ops[index] = self._op_code(request.op)
        payload = self._encode(request)
        if self.idle:  # an idle slot implies an empty queue: release() drains the queue first
            self._send(index, request, payload, self.idle.popleft())
        else:
            self.queue.append((index, request, payload))
        return True

    def tick(self) -> None:
        """Dispatch every request that is due (up to a batch), then arrange to run again when the next one is.

        At most one follow-up is pending at any time: the timer (re-arming replaces it) or one call_soon.
        """
        if self.finished.done():
            return
        intended, index = self.intended, self.next_index
        stop = min(len(intended), index + _MAX_BATCH)
        now = time.monotonic() - self.t0
        while index < stop and intended[index] <= now:
            if not self._dispatch(index):
                return
            index += 1
        self.next_index = index
        if index >= len(intended):
            self._check_finished()
            return
        due = self.t0 + intended[index]
        ahead = due - time.monotonic()
        if ahead > _WAKE_EARLY_AFTER:  # a long idle: wake a little early, then poll until it is due
            self._poll_for = index
            self.timer.arm(due - _WAKE_EARLY)
        elif ahead > _SOON and self._poll_for != index:
            self.timer.arm(due)
        elif not self._tick_soon:
            self._tick_soon = True
            self.loop.call_soon(self._tick_from_soon)

    def _tick_from_soon(self) -> None:
        self._tick_soon = False
        self.tick()

    def sweep(self) -> None:
        """Time out requests older than ``spec.timeout`` (in flight or waiting), then run again shortly."""
        if self.finished.done():
            return
        deadline = time.monotonic() - self.t0 - self.spec.timeout
        intended = self.intended
        while self.queue and intended[self.queue[0][0]] <= deadline:
            index, request, _ = self.queue.popleft()
            self.finish(index, request, 0, b"", _TIMEOUT)
        expired = []
        for index, entry in self.inflight.items():  # in index order, so in intended order
            if intended[index] > deadline:
                break
            expired.append((index, entry))
        for index, (conn, request) in expired:
            if conn is not None:
                conn.give_up(_TIMEOUT)
            else:  # still connecting: _open_for sees it gone and keeps or frees the slot
                self.finish(index, request, 0, b"", _TIMEOUT)
        self.loop.call_later(min(0.02, self.spec.timeout / 10), self.sweep)

    # ---- the whole run -----------------------------------------------------------------------------------------
    async def run(self, connections: int, start: Callable[[], Awaitable[float]] | None = None) -> None:
        """Open the pool, play the schedule, wait for every request to finish or time out, close everything.

        The clock starts once the pool is open: now, or at the ``time.monotonic()`` value that ``start`` returns
        (it may lie a little ahead: the first request is then sent at that time).
        """
        await self.open_pool(connections)
        # Everything alive now survives the run: freezing it keeps a collection during the run from walking the
        # whole heap (a full collection took up to 8 ms, eight times the send-lag budget).
        gc.collect()
        gc.freeze()
        self.t0 = time.monotonic() if start is None else await start()
        cpu_at_start = time.process_time()
        self.loop.call_soon(self.tick)
        self.loop.call_soon(self.sweep)
        last = self.intended[-1] if self.intended else 0.0
        try:
            # The sweep guarantees progress; this bound only protects against a bug hanging the caller forever.
            bound = max(0.0, self.t0 - time.monotonic()) + last + self.spec.timeout + 30
            await asyncio.wait_for(asyncio.shield(self.finished), bound)
        finally:
            self.cpu_used = time.process_time() - cpu_at_start
            gc.unfreeze()
            self.timer.close()
            if not self.finished.done():
                self.finished.set_result(None)
            for conn in list(self.connections):
                conn.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def result(self, connections: int) -> LoadResult:
        """The records as a ``LoadResult``."""
        names = np.array(list(self.op_names) or [""], dtype=object)
        intended = np.frombuffer(self.intended, dtype=np.float64).copy()
        records: dict[str, npt.NDArray[Any]] = {
            "op": names[np.frombuffer(self.ops, dtype=np.int32)],
            "intended": intended,
            "dispatched": np.frombuffer(self.dispatched, dtype=np.float64).copy(),
            "sent": np.frombuffer(self.sent, dtype=np.float64).copy(),
            "done": np.frombuffer(self.done, dtype=np.float64).copy(),
            "status": np.frombuffer(self.status, dtype=np.int16).copy(),
            "error": np.array(ERROR_CLASSES, dtype=object)[np.frombuffer(self.error, dtype=np.int8)],
            "unanswered": np.frombuffer(self.unanswered, dtype=np.int8).astype(bool),
            "warmup": intended < self.spec.warmup,
        }
        return LoadResult(self.spec, records, connections, self.workload_error, self.t0, self.cpu_used)


def _resolve(base_url: str) -> tuple[tuple[str, int], str]:
    """(ip, port) to connect to and the Host header, from an http:// base URL."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http://host[:port] URLs are supported: {base_url!r}")
    port = parts.port or 80
    # Resolve once, to one address: connecting by name would try every address and blur a refusal into a
    # generic "multiple exceptions" error.
    sockaddr = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)[0][4]
    return (str(sockaddr[0]), int(sockaddr[1])), parts.netloc


async def run_load(base_url: str, workload: Workload, spec: LoadSpec) -> LoadResult:
    """Offer ``spec``'s load to ``base_url`` with requests from ``workload`` and return every request's record.

    Runs on the current event loop, in this interpreter (``spec.processes`` and ``spec.cpus`` do not apply: this
    is the engine that each generator process runs); under uvloop it is cheapest. Requests are sent on
    ``pool_size(spec)`` keep-alive connections opened before the clock starts; when none is free a request waits in
    FIFO order and the wait is part of its latency and of its send lag.
    """
    address, host = _resolve(base_url)
    engine = _Run(address, host, workload, spec)
    connections = pool_size(spec)
    await engine.run(connections)
    return engine.result(connections)


__all__ = [
    "ERROR_CLASSES",
    "MAX_SEND_LAG_P99",
    "MIN_ACHIEVED_SHARE",
    "LoadResult",
    "LoadSpec",
    "RemoteWorkload",
    "Request",
    "Workload",
    "WorkloadSource",
    "encode_request",
    "pool_size",
    "run_load",
    "schedule",
]

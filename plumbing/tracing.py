"""W3C trace context and span recording, for the per-hop breakdown of a request.

Only sampled requests are recorded: those arriving with a ``traceparent`` whose flags are ``01``. The harness sends a
few such requests at low load; ordinary load carries no traceparent and costs one header lookup.

Who may ask for a trace: at the public edge (the monolith, the gateway, colocated's public app) only a caller that
also presents a valid service credential of the run (:func:`trusted`; the harness sends one, see
:func:`harness_headers`). Anyone else's traceparent is ignored: the request starts a fresh, unsampled trace (W3C trace
context lets a server restart a trace), so an outside client cannot make every process write spans. Internal
endpoints, which only accept callers with a service credential, keep following the traceparent their caller sends.

Every process records a *server* span for each sampled request it handles and a *client* span for each internal call
it makes while handling it; the client span's id is the parent id the callee receives. Comparing a client span with
the callee's server span gives the time between the processes (serialization, transport, queueing); a server span
minus its client spans gives the time spent inside the process. A server span also says how much of its time went to
the database (``db_us``): while a sampled request is handled, the engines add the time of its database calls to a
clock of the request's own (:data:`shop.connection.DATABASE_TIME`, set here), so unsampled requests pay one lookup per
database call.

Spans are appended as JSON lines to the file given to :func:`configure` (one per process in the run directory), and
kept in memory (bounded) for in-process use. Writing never blocks the event loop: a span is encoded into a bounded
buffer and a writer thread appends the buffer to the file in batches (at most :data:`FLUSH_EVERY` later); when the
buffer is full, new spans are counted as dropped rather than queued.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from plumbing.auth import CREDENTIAL_HEADER, AuthConfig
from shop.connection import DATABASE_TIME, DatabaseClock

FLUSH_EVERY = 0.1  # seconds between the writer thread's batches
MAX_BUFFERED = 10_000  # span lines waiting for the writer; beyond, spans are dropped (and counted)
HARNESS = "harness"  # the name in the credential the harness presents to ask for traces


class Span(msgspec.Struct):
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str  # "server" or "client"
    app: str
    name: str
    start_us: int  # wall clock, microseconds since the epoch (one machine, one clock)
    duration_us: int
    bytes_in: int
    bytes_out: int
    status: int
    # Of a server span's duration, the time in database calls (statements, fetches, commits, the wait for the write
    # lock); 0 for a client span. A default, so span files written without it still decode.
    db_us: int = 0


@dataclass(frozen=True, slots=True)
class Context:
    """The trace being handled: its id and the current server span's id (the parent of outgoing calls)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    app: str
    database: DatabaseClock  # the server span's time in the database so far


@dataclass(frozen=True, slots=True)
class Began:
    """A server span begun by :func:`begin`, for :func:`end`: the tokens that restore the caller's trace and clock."""

    trace: Token[Context | None]
    database: Token[DatabaseClock | None]


_current: ContextVar[Context | None] = ContextVar("trace", default=None)
_encoder = msgspec.json.Encoder()


class Recorder:
    def __init__(self) -> None:
        self.recent: deque[Span] = deque(maxlen=10_000)
        self.dropped = 0
        self._file: IO[bytes] | None = None
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None

    def configure(self, path: Path | None) -> None:
        self.flush()
        with self._io_lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("ab")
        if path is not None and self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, name="span-writer", daemon=True)
            self._writer.start()

    def record(self, span: Span) -> None:
        """Keep ``span``; its line reaches the file from the writer thread (never written on the event loop)."""
        self.recent.append(span)
        if self._file is None:
            return
        line = _encoder.encode(span) + b"\n"
        with self._lock:
            if len(self._pending) >= MAX_BUFFERED:
                self.dropped += 1
                return
            self._pending.append(line)

    def flush(self) -> None:
        """Write every buffered line now (the writer thread does this every :data:`FLUSH_EVERY` seconds)."""
        with self._io_lock:  # one writer at a time; the event loop only ever takes _lock, for a list swap
            with self._lock:
                batch, self._pending = self._pending, []
            if batch and self._file is not None:
                self._file.write(b"".join(batch))
                self._file.flush()

    def _write_forever(self) -> None:
        while True:
            self._wake.wait(FLUSH_EVERY)
            try:
                self.flush()
            except OSError:  # a full or vanished volume: spans are lost, the process goes on
                with self._lock:
                    self.dropped += len(self._pending)
                    self._pending = []


RECORDER = Recorder()


def configure(path: Path | None) -> None:
    """Write this process's spans to ``path`` (JSON lines)."""
    RECORDER.configure(path)


def flush() -> None:
    """Write the spans still buffered (at shutdown)."""
    RECORDER.flush()


def trusted(auth: AuthConfig, headers: Mapping[str, str]) -> bool:
    """Whether a request at the public edge may ask for a trace: it carries a valid service credential of the run."""
    return auth.caller(headers) is not None


def harness_headers(service_secret: str | None) -> tuple[tuple[str, str], ...]:
    """What the harness adds to a request to have its traceparent honoured at the edge (nothing without a secret)."""
    if not service_secret:
        return ()
    credential = AuthConfig(service_secret=service_secret.encode()).credential(HARNESS)
    return ((CREDENTIAL_HEADER, credential),) if credential else ()


def new_id(nbytes: int = 8) -> str:
    return os.urandom(nbytes).hex()


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def parse(header: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_id)`` of a sampled W3C traceparent, or None."""
    if header is None or len(header) != 55:
        return None
    version, trace_id, parent_id, flags = header.split("-") if header.count("-") == 3 else ("", "", "", "")
    if version != "00" or flags != "01" or len(trace_id) != 32 or len(parent_id) != 16:
        return None
    return trace_id, parent_id


def begin(header: str | None, app: str, trusted: bool = True) -> Began | None:
    """Start a server span if the request is sampled and ``trusted`` to ask for it, and its database clock; returns
    what :func:`end` needs, or None (an untrusted traceparent is ignored: the request is handled as a fresh, unsampled
    trace)."""
    if not trusted:
        return None
    parsed = parse(header)
    if parsed is None:
        return None
    clock = DatabaseClock()
    return Began(_current.set(Context(parsed[0], new_id(), parsed[1], app, clock)), DATABASE_TIME.set(clock))


def end(began: Began, name: str, elapsed: float, bytes_in: int, bytes_out: int, status: int) -> None:
    """Record the server span begun as ``began``, which lasted ``elapsed`` seconds until now."""
    ctx = _current.get()
    _current.reset(began.trace)
    DATABASE_TIME.reset(began.database)
    if ctx is not None:
        start_us = int((time.time() - elapsed) * 1e6)
        span = Span(
            ctx.trace_id,
            ctx.span_id,
            ctx.parent_id,
            "server",
            ctx.app,
            name,
            start_us,
            int(elapsed * 1e6),
            bytes_in,
            bytes_out,
            status,
            db_us=int(ctx.database.seconds * 1e6),
        )
        RECORDER.record(span)


def current() -> Context | None:
    """The sampled trace being handled by this task, if any."""
    return _current.get()


def record_call(
    ctx: Context, call_id: str, name: str, elapsed: float, bytes_out: int, bytes_in: int, status: int
) -> None:
    """Record the client side of an internal call made while handling ``ctx``, which lasted ``elapsed`` until now."""
    start_us = int((time.time() - elapsed) * 1e6)
    span = Span(
        ctx.trace_id,
        call_id,
        ctx.span_id,
        "client",
        ctx.app,
        name,
        start_us,
        int(elapsed * 1e6),
        bytes_in,
        bytes_out,
        status,
    )
    RECORDER.record(span)

"""W3C trace context and span recording, for the per-hop breakdown of a request.

Only sampled requests are recorded: those arriving with a ``traceparent`` whose flags are ``01``. The harness sends a
few such requests at low load; ordinary load carries no traceparent and costs one header lookup.

Every process records a *server* span for each sampled request it handles and a *client* span for each internal call
it makes while handling it; the client span's id is the parent id the callee receives. Comparing a client span with
the callee's server span gives the time between the processes (serialization, transport, queueing); a server span
minus its client spans gives the time spent inside the process.

Spans are appended as JSON lines to the file given to :func:`configure` (one per process in the run directory), and
kept in memory (bounded) for in-process use.
"""

from __future__ import annotations

import os
import time
from collections import deque
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec


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


@dataclass(frozen=True, slots=True)
class Context:
    """The trace being handled: its id and the current server span's id (the parent of outgoing calls)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    app: str


_current: ContextVar[Context | None] = ContextVar("trace", default=None)
_encoder = msgspec.json.Encoder()


class Recorder:
    def __init__(self) -> None:
        self.recent: deque[Span] = deque(maxlen=10_000)
        self._file: IO[bytes] | None = None

    def configure(self, path: Path | None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")

    def record(self, span: Span) -> None:
        self.recent.append(span)
        if self._file is not None:
            self._file.write(_encoder.encode(span) + b"\n")
            self._file.flush()


RECORDER = Recorder()


def configure(path: Path | None) -> None:
    """Write this process's spans to ``path`` (JSON lines)."""
    RECORDER.configure(path)


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


def begin(header: str | None, app: str) -> Token[Context | None] | None:
    """Start a server span if the request is sampled; returns a token for :func:`end`, or None."""
    parsed = parse(header)
    if parsed is None:
        return None
    return _current.set(Context(parsed[0], new_id(), parsed[1], app))


def end(token: Token[Context | None], name: str, elapsed: float, bytes_in: int, bytes_out: int, status: int) -> None:
    """Record the server span begun with ``token``, which lasted ``elapsed`` seconds until now."""
    ctx = _current.get()
    _current.reset(token)
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

"""What one process accepts from a socket: time to send a request, size of its head, number of connections.

uvicorn closes an idle keep-alive connection after a response, but nothing else: a client that connects and sends
nothing, sends a request line and never the blank line after the headers, or announces a body and sends part of it,
holds a connection (and, with a body, a request task) for as long as it likes, and httptools accepts a head of any
size. :class:`GuardedHttpToolsProtocol` adds, per connection:

* a connection that has sent nothing is closed after the keep-alive timeout, like an idle keep-alive connection;
* a request must arrive whole (head and body) within ``request_timeout`` of its first byte, else 408 and close
  (just close when a response to it has already started);
* a request head (request line and headers) larger than ``max_head_bytes`` is refused with 431 and the connection
  closed, before the request reaches the app (so the gateway never forwards it);
* beyond ``max_connections`` open connections, a new one gets 503 and is closed at once.

The limits come from the environment (:meth:`Limits.from_env`), read by :mod:`plumbing.host`; docs/operations.md
explains the defaults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

KEEP_ALIVE_ENV = "ARCHBENCH_KEEP_ALIVE_TIMEOUT"
REQUEST_TIMEOUT_ENV = "ARCHBENCH_REQUEST_TIMEOUT"
MAX_HEAD_ENV = "ARCHBENCH_MAX_HEAD_BYTES"
MAX_CONNECTIONS_ENV = "ARCHBENCH_MAX_CONNECTIONS"


@dataclass(frozen=True)
class Limits:
    """Seconds and counts; see the module docstring."""

    keep_alive_timeout: float = 5.0
    request_timeout: float = 10.0
    max_head_bytes: int = 16 * 1024
    max_connections: int = 2048

    def __post_init__(self) -> None:
        if self.keep_alive_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_head_bytes < 1024 or self.max_connections < 1:
            raise ValueError("the head limit must be >= 1024 bytes and the connection cap >= 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """The defaults, overridden by whichever ``ARCHBENCH_*`` variables are set (a malformed one is an error)."""
        default = cls()
        try:
            return cls(
                float(env.get(KEEP_ALIVE_ENV, default.keep_alive_timeout)),
                float(env.get(REQUEST_TIMEOUT_ENV, default.request_timeout)),
                int(env.get(MAX_HEAD_ENV, default.max_head_bytes)),
                int(env.get(MAX_CONNECTIONS_ENV, default.max_connections)),
            )
        except ValueError as exc:
            raise ValueError(f"invalid connection limit in the environment: {exc}") from exc


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


def _reply(status: int, detail: bytes) -> bytes:
    body = b'{"error":"%s","detail":"%s"}' % (
        {408: b"request_timeout", 431: b"headers_too_large", 503: b"too_many_connections"}[status],
        detail,
    )
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`Limits` (set on a subclass by :func:`protocol`)."""

    limits = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]  # uvicorn says int
        self._request_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True  # no head completed since the last request ended (or since the connection opened)
        self._receiving = False  # a request has begun to arrive and has not fully arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.logger.warning("connection refused: more than %d open", self.limits.max_connections)
            transport.write(_reply(503, b"too many open connections"))
            transport.close()
            return
        # Idle from the start: closed like an idle keep-alive connection unless a request begins.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if not self._receiving:
            self._receiving = True
            self._request_timer = self.loop.call_later(self.limits.request_timeout, self._request_timed_out)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # a callback's HeadTooLarge comes back wrapped in one
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse_head()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._cancel_request_timer()

    # ---- helpers ------------------------------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_head_bytes:
            raise HeadTooLarge

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _refuse_head(self) -> None:
        self._cancel_request_timer()
        self.logger.warning("request refused: head larger than %d bytes", self.limits.max_head_bytes)
        self._close_with(_reply(431, b"request head larger than %d bytes" % self.limits.max_head_bytes))

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._in_head or cycle is None:
            answerable = cycle is None or cycle.response_complete
        else:
            answerable = not cycle.response_started
        detail = b"request not received within %g s" % self.limits.request_timeout
        self._close_with(_reply(408, detail) if answerable else b"")

    def _close_with(self, reply: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app is reading this request: it sees a disconnect, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if reply:
            self.transport.write(reply)
        self.transport.close()


def protocol(limits: Limits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to ``limits``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})

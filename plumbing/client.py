"""The one inter-service HTTP client of archbench, switchable between client stacks.

Every service calls every other service through :func:`open_transport`. The stack is a parameter because the choice of
HTTP client library can change the measured cost of a hop by 10x (``python -m bench.calibration.hops``,
docs/measurements.md): the report must measure an architecture, not a library.

Two kinds of outcome, never mixed:

* an HTTP reply, whatever its status (404, 409, 503 ...), comes back as a :class:`Reply`;
* a transport failure (nothing or only part of a reply came back) raises :class:`RemoteCallError`. Such a call may
  still have run on the other side, so callers retry only idempotent, keyed operations.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol, cast
from urllib.parse import quote, unquote, urlsplit

import httptools
from starlette.types import ASGIApp, Message, Scope

from plumbing.framing import is_interim, response_has_body

__all__ = [
    "DEFAULT_STACK",
    "STACKS",
    "ErrorKind",
    "RemoteCallError",
    "Reply",
    "Transport",
    "open_transport",
]

STACKS: Final[tuple[str, ...]] = ("raw", "aiohttp", "httpx", "httpx-aiohttp", "asgi")
"""Valid values of ``stack``: archbench's own lean HTTP/1.1 client ("raw"), three client libraries, and an in-process
ASGI caller without any socket ("asgi")."""

# Chosen by `python -m bench.calibration.hops` (figures in docs/measurements.md): "raw" is the only network stack near
# the budget of 150 us extra latency and CPU per hop at low load (about 165 us, against about 300 for aiohttp, 550 for
# httpx-aiohttp and over 1000 for httpx), as close as the "floor" yardstick of the benchmark (a relay over bare asyncio
# streams) allows, and it has the highest throughput at 32 concurrent calls (about 2x aiohttp's; httpx.AsyncClient
# collapses there).
DEFAULT_STACK: Final[str] = "raw"

# Below uvicorn's default keep-alive (5 s): a pooled connection must expire on our side first, otherwise a request
# can be written on a socket the server is closing and fail with a spurious "reset".
_KEEPALIVE_S: Final[float] = 4.0

ErrorKind = Literal["refused", "reset", "timeout", "unavailable"]

_log = logging.getLogger(__name__)


class RemoteCallError(Exception):
    """The call failed in transport; it may or may not have run on the other side.

    ``kind`` is one of ``"refused"`` (nothing listens), ``"reset"`` (the connection broke mid-call), ``"timeout"``
    (no complete reply in time) or ``"unavailable"`` (any other transport failure); ``target`` is the base url.
    """

    def __init__(self, kind: ErrorKind, target: str, detail: str = "") -> None:
        super().__init__(f"{kind} calling {target}" + (f": {detail}" if detail else ""))
        self.kind: ErrorKind = kind
        self.target = target


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP reply of any status. Header names are lower-case; repeated headers are joined with ", "."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class Transport(Protocol):
    """A pooled client bound to one base url (or one in-process app)."""

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
        """Send one request; ``path`` may carry a query string; ``timeout`` (total, seconds) overrides the default.

        ``idempotent`` tells a retrying wrapper whether the call may be repeated (None: decided by the method);
        plain transports send once and ignore it.
        """
        ...

    async def aclose(self) -> None:
        """Release pooled connections. Idempotent."""
        ...


def open_transport(
    stack: str,
    base_url: str,
    *,
    app: ASGIApp | None = None,
    pool_size: int = 64,
    timeout: float = 5.0,
    connect_timeout: float = 1.0,
) -> Transport:
    """Return a transport of ``stack`` for ``base_url``; usable from any event loop that first calls it.

    Nothing is connected here, so this may run outside an event loop: the session is created on the first request,
    in the running loop, and stays bound to that loop. ``timeout`` bounds a whole call, ``connect_timeout`` the TCP
    connect. The ``"asgi"`` stack calls ``app`` in-process (``base_url`` then only names the target and fills the
    Host header); the network stacks reject ``app``.
    """
    if stack not in STACKS:
        raise ValueError(f"unknown client stack {stack!r}; valid stacks: {', '.join(STACKS)}")
    if timeout <= 0 or connect_timeout <= 0 or pool_size < 1:
        raise ValueError("timeout and connect_timeout must be > 0 and pool_size >= 1")
    if (stack == "asgi") != (app is not None):
        raise ValueError("the 'asgi' stack needs app=..., and only it accepts one")
    if app is not None:
        return _AsgiTransport(app, base_url, timeout=timeout)
    if stack == "raw":
        return _RawTransport(base_url, pool_size=pool_size, timeout=timeout, connect_timeout=connect_timeout)
    from plumbing import libstacks  # imported on demand: see CLASSIFIERS

    if stack == "aiohttp":
        return libstacks.AiohttpTransport(
            base_url, pool_size=pool_size, timeout=timeout, connect_timeout=connect_timeout
        )
    return libstacks.HttpxTransport(
        base_url,
        pool_size=pool_size,
        timeout=timeout,
        connect_timeout=connect_timeout,
        via_aiohttp=stack == "httpx-aiohttp",
    )


# -- error translation: once, at the boundary -------------------------------------------------------------------------

#: Classifiers of library exceptions, registered by ``plumbing.libstacks`` when a library stack is first used (the
#: libraries are imported only then: aiohttp and httpx together cost about 0.2 s of start-up per process).
CLASSIFIERS: list[Callable[[BaseException], ErrorKind | None]] = []

_ERRNO_KINDS: Final[dict[int, ErrorKind]] = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ECONNABORTED: "reset",
    errno.ETIMEDOUT: "timeout",
}


def _kind_of(exc: BaseException) -> ErrorKind | None:
    """The kind one exception shows by itself, or None if it says nothing specific."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return _ERRNO_KINDS[exc.errno]
    for classify in CLASSIFIERS:  # what the library stacks know of their own exceptions, once they are loaded
        if (kind := classify(exc)) is not None:
            return kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "reset"
    if isinstance(exc, BaseExceptionGroup):
        return next((kind for sub in exc.exceptions if (kind := _kind_of(sub)) is not None), None)
    return None


def _cause_of(exc: BaseException) -> BaseException | None:
    """The exception ``exc`` wraps: its explicit cause, else the one it carries as first argument (httpcore's
    wrappers do), else the one being handled when it was raised."""
    if exc.__cause__ is not None:
        return exc.__cause__
    if exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    return None if exc.__suppress_context__ else exc.__context__


def _remote_error(exc: BaseException, target: str) -> RemoteCallError:
    """Classify by the innermost exception that says something: wrappers relabel causes (httpx-aiohttp, for one,
    turns a server disconnect into ``httpx.ConnectTimeout``), the root cause does not lie."""
    chain: list[BaseException] = [exc]
    while (cause := _cause_of(chain[-1])) is not None and cause not in chain and len(chain) < 16:
        chain.append(cause)
    kinds = (kind for cause in reversed(chain) if (kind := _kind_of(cause)) is not None)
    return RemoteCallError(next(kinds, "unavailable"), target, f"{type(exc).__name__}: {exc}")


def _folded(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case header names; join repeated headers as RFC 9110 allows."""
    folded: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        folded[key] = f"{folded[key]}, {value}" if key in folded else value
    return folded


class _LoopBound:
    """Checks that a lazily created session is only used from the loop that created it."""

    _loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("this transport is bound to another event loop; open one transport per loop")
        return loop


# -- network stacks ---------------------------------------------------------------------------------------------------


# -- the lean network stack: archbench's own HTTP/1.1 client ----------------------------------------------------------
#
# Why a client of our own: on the 2-core dev machine aiohttp's ClientSession costs about 130 us more CPU per call than
# a bare asyncio stream (this client: about 25 us), and `python -m bench.calibration.hops` measures about 300 us extra
# latency and CPU for one hop through it, twice the budget of 150 us (docs/measurements.md). Services only speak
# HTTP/1.1 to uvicorn servers over loopback, so a keep-alive pool on asyncio protocols with httptools (the parser
# uvicorn itself uses) is enough.
# Deliberately out of scope: TLS, proxies, redirects, compression, HTTP/2, request streaming, responses delimited by
# closing the connection (uvicorn always frames with Content-Length or chunked encoding).

_SAFE_PATH: Final = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_OWN_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._method = "GET"
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0

    # asyncio protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check possible.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection's state is unknown, drop it
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settle(exc or ConnectionResetError(errno.ECONNRESET, "the server closed the connection"))

    # httptools parser callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if is_interim(status):  # a 100 Continue or the like: the final reply follows
            self.headers = []
        elif not response_has_body(self._method, status):
            # The parser ends a 204 or 304 itself, but would wait for the body a reply to HEAD announces and never
            # sends: stop here, and never reuse that connection (its parser is out of step).
            self._complete(reusable=self._method != "HEAD" and self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not is_interim(self._parser.get_status_code()):
            self._complete(reusable=self._parser.should_keep_alive())

    # used by the pool
    async def exchange(self, request: bytes, method: str, deadline: float) -> None:
        """Send ``request`` and wait for the whole response until ``deadline`` (loop time); fills status/headers/chunks.

        Any failure, including cancellation, closes the connection: its state is unknown.
        """
        if self.closed or self._transport is None:
            raise ConnectionResetError(errno.ECONNRESET, "the server closed the idle connection")
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._method = method
        self.headers, self.chunks, self.reusable = [], [], False
        self._transport.write(request)
        timer = loop.call_at(deadline, self._settle, TimeoutError("no complete reply before the deadline"))
        try:
            await self._waiter
        except BaseException:
            self.close()
            raise
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _complete(self, *, reusable: bool) -> None:
        self.status = self._parser.get_status_code()
        self.reusable = reusable
        self._settle(None)

    def _settle(self, exc: BaseException | None) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if exc is None:
            self._waiter.set_result(None)
        else:
            self._waiter.set_exception(exc)


class _RawTransport(_LoopBound):
    """A LIFO pool of at most ``pool_size`` keep-alive connections to one host."""

    def __init__(self, base_url: str, *, pool_size: int, timeout: float, connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the 'raw' stack speaks plain http to a host, not {base_url!r}")
        self._base = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._host_line = f"host: {parts.netloc}\r\n"
        self._pool_size = pool_size
        self._total = timeout
        self._connect_timeout = connect_timeout
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_RawConnection] = []
        self._open: set[_RawConnection] = set()

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
        loop = self._bind_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._pool_size)
        slots = self._slots
        deadline = loop.time() + (self._total if timeout is None else timeout)
        request = self._encode(method, path, body, headers)
        try:
            if slots.locked():  # only pay for a timer when we have to queue for a connection
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            else:
                await slots.acquire()
            try:
                connection = self._take_idle() or await self._connect(deadline)
                try:
                    await connection.exchange(request, method, deadline)
                except BaseException:
                    self._discard(connection)
                    raise
            finally:
                slots.release()
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            raise _remote_error(exc, self._base) from exc
        self._put_back(connection)
        headers_out = _folded((k.decode("latin-1"), v.decode("latin-1")) for k, v in connection.headers)
        return Reply(connection.status, b"".join(connection.chunks), headers_out)

    def _encode(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str] | None) -> bytes:
        if not _SAFE_PATH.fullmatch(path):
            path = quote(path if path.startswith("/") else "/" + path, safe="/?&=:@!$'()*+,;~%")
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._host_line}"
        if headers:
            for name, value in headers.items():
                if name.lower() in _OWN_HEADERS:
                    continue
                if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                    raise ValueError(f"invalid header {name!r}")
                head += f"{name}: {value}\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"content-length: {len(body or b'')}\r\n"
        return (head + "\r\n").encode("latin-1") + (body or b"")

    def _take_idle(self) -> _RawConnection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < _KEEPALIVE_S:
                return connection
            self._discard(connection)
        return None

    async def _connect(self, deadline: float) -> _RawConnection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(min(deadline, loop.time() + self._connect_timeout)):
            _, connection = await loop.create_connection(_RawConnection, self._host, self._port)
        self._open.add(connection)
        return connection

    def _put_back(self, connection: _RawConnection) -> None:
        if connection.reusable and not connection.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: _RawConnection) -> None:
        connection.close()
        self._open.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._open):
            self._discard(connection)
        self._idle.clear()


# -- in-process stack -------------------------------------------------------------------------------------------------
#
# Hand-written rather than httpx.ASGITransport, by measurement (`python -m bench.calibration.hops`, table "in-process
# ASGI hop", starlette hello world, docs/measurements.md): httpx.AsyncClient + ASGITransport costs about 150 us per call
# over the
# bare app, this caller about 15 us. The colocated topology exists to show what serialization and data splitting cost
# without the network; a caller that alone costs as much as a loopback round trip would hide exactly that.
#
# The app runs in its own task, as it would in its own process: it gets a copy of the caller's contextvars rather than
# sharing them, and a call that times out keeps running on the callee's side ("a remote call that failed may still
# have run"), which is what the saga's idempotent steps are tested against.


class _AsgiExchange:
    """One request/response exchange with an ASGI app, buffered in memory."""

    __slots__ = ("_disconnect", "_request_body", "chunks", "complete", "headers", "status")

    def __init__(self, body: bytes) -> None:
        self._request_body: bytes | None = body
        self._disconnect: asyncio.Future[None] | None = None
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.complete = False

    async def receive(self) -> Message:
        if self._request_body is not None:
            body, self._request_body = self._request_body, None
            return {"type": "http.request", "body": body, "more_body": False}
        # As a server does: the client "disconnects" once the response is complete (streaming responses wait on it).
        if not self.complete:
            self._disconnect = asyncio.get_running_loop().create_future()
            await self._disconnect
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body" and not self.complete:
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
                if self._disconnect is not None and not self._disconnect.done():
                    self._disconnect.set_result(None)


async def _wait_detached(task: asyncio.Task[None], timeout: float) -> None:
    """Wait for ``task`` at most ``timeout`` seconds; neither the timeout nor cancelling the waiter cancels the task.

    Same effect as ``asyncio.timeout`` around ``asyncio.shield``, at half the cost (about 5 us instead of 10).
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def release(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def expire() -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError(f"no reply within {timeout} s"))

    task.add_done_callback(release)
    timer = loop.call_later(timeout, expire)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(release)


class _AsgiTransport:
    def __init__(self, app: ASGIApp, base_url: str, *, timeout: float) -> None:
        self._app = app
        self._target = base_url
        self._timeout = timeout
        parts = urlsplit(base_url)
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._scheme = parts.scheme or "http"
        self._host_header = (parts.netloc or host).encode("latin-1")
        self._server = (host, port)
        self._running: set[asyncio.Task[None]] = set()

    def _scope(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
        raw_path, _, query = path.partition("?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": self._scheme,
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": self._server,
        }

    def _headers(self, body: bytes, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        encoded = [(b"host", self._host_header)]
        if body:
            encoded.append((b"content-length", str(len(body)).encode()))
        if headers:
            encoded += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        return encoded

    async def _serve(self, scope: Scope, exchange: _AsgiExchange) -> None:
        try:
            await self._app(scope, exchange.receive, exchange.send)
        except Exception:
            # A server logs the crash and answers 500 (or cuts the connection if it had started answering).
            _log.exception("in-process app %s raised", self._target)

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
        body = body or b""
        exchange = _AsgiExchange(body)
        task = asyncio.get_running_loop().create_task(
            self._serve(self._scope(method, path, self._headers(body, headers)), exchange)
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            await _wait_detached(task, self._timeout if timeout is None else timeout)
        except TimeoutError as exc:
            raise _remote_error(exc, self._target) from exc
        if task.cancelled():
            raise RemoteCallError("reset", self._target, "the transport was closed during the call")
        return self._reply(exchange)

    def _reply(self, exchange: _AsgiExchange) -> Reply:
        if exchange.status is None:
            return Reply(500, b"Internal Server Error", {"content-type": "text/plain; charset=utf-8"})
        if not exchange.complete:
            raise RemoteCallError("reset", self._target, "the app stopped before completing its response")
        headers = _folded((k.decode("latin-1"), v.decode("latin-1")) for k, v in exchange.headers)
        return Reply(exchange.status, b"".join(exchange.chunks), headers)

    async def aclose(self) -> None:
        """Cancel calls still running in the app (those whose caller timed out) and wait for them."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

"""archbench's own lean HTTP/1.1 client: the default stack between services."""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import Mapping
from typing import Final, cast
from urllib.parse import quote, urlsplit

import httptools

from plumbing.framing import is_interim, response_has_body
from plumbing.transports.base import KEEPALIVE_S, LoopBound, Reply, folded, remote_error

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


class RawTransport(LoopBound):
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
            raise remote_error(exc, self._base) from exc
        self._put_back(connection)
        headers_out = folded((k.decode("latin-1"), v.decode("latin-1")) for k, v in connection.headers)
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
            if not connection.closed and now - connection.idle_since < KEEPALIVE_S:
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

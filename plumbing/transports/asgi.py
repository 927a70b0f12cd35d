"""The in-process stack: calls an ASGI app without a socket (the colocated topology)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp, Message, Scope

from plumbing.transports.base import RemoteCallError, Reply, folded, remote_error

_log = logging.getLogger(__name__)

# Hand-written rather than httpx.ASGITransport, by measurement (`python -m bench.calibration.hops`, table "in-process
# ASGI hop", starlette hello world, docs/measurements.md): httpx.AsyncClient + ASGITransport costs about 150 us per call
# over the bare app, this caller about 15 us. The colocated topology exists to show what serialization and data
# splitting cost without the network; a caller that alone costs as much as a loopback round trip would hide exactly
# that.
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


class AsgiTransport:
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
            raise remote_error(exc, self._target) from exc
        if task.cancelled():
            raise RemoteCallError("reset", self._target, "the transport was closed during the call")
        return self._reply(exchange)

    def _reply(self, exchange: _AsgiExchange) -> Reply:
        if exchange.status is None:
            return Reply(500, b"Internal Server Error", {"content-type": "text/plain; charset=utf-8"})
        if not exchange.complete:
            raise RemoteCallError("reset", self._target, "the app stopped before completing its response")
        headers = folded((k.decode("latin-1"), v.decode("latin-1")) for k, v in exchange.headers)
        return Reply(exchange.status, b"".join(exchange.chunks), headers)

    async def aclose(self) -> None:
        """Cancel calls still running in the app (those whose caller timed out) and wait for them."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

"""The library client stacks (aiohttp, httpx, httpx over aiohttp), kept beside archbench's own for comparison.

Imported only when one of them is chosen, so that a process on the default stack does not pay for importing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport as HttpxAiohttpTransport

from plumbing.transports.base import KEEPALIVE_S, ErrorKind, LoopBound, Reply, folded, kind_of, remote_error


def classify(exc: BaseException) -> ErrorKind | None:
    """What aiohttp's and httpx's exceptions say about a failed call."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return kind_of(exc.os_error)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | httpx.RemoteProtocolError
        | httpx.ReadError
        | httpx.WriteError,
    ):
        return "reset"
    return None


class AiohttpTransport(LoopBound):
    def __init__(self, base_url: str, *, pool_size: int, timeout: float, connect_timeout: float) -> None:
        self._base = base_url.rstrip("/")
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        # sock_connect, not connect: aiohttp's `connect` also counts the wait for a free pooled connection, which is
        # queueing under load and belongs to the total budget.
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        self._bind_loop()
        connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=KEEPALIVE_S)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

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
        session = self._session or self._open()
        per_call = (
            self._timeout
            if timeout is None
            else aiohttp.ClientTimeout(total=timeout, sock_connect=self._connect_timeout)
        )
        try:
            async with session.request(
                method, self._base + path, data=body, headers=headers, timeout=per_call, allow_redirects=False
            ) as response:
                data = await response.read()
                return Reply(response.status, data, folded(response.headers.items()))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise remote_error(exc, self._base, classify) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxTransport(LoopBound):
    """httpx.AsyncClient over httpcore, or over aiohttp (package httpx-aiohttp)."""

    def __init__(
        self, base_url: str, *, pool_size: int, timeout: float, connect_timeout: float, via_aiohttp: bool
    ) -> None:
        self._base = base_url.rstrip("/")
        self._pool_size = pool_size
        self._total = timeout
        self._connect_timeout = connect_timeout
        self._via_aiohttp = via_aiohttp
        self._client: httpx.AsyncClient | None = None

    def _open(self) -> httpx.AsyncClient:
        self._bind_loop()
        limits = httpx.Limits(
            max_connections=self._pool_size, max_keepalive_connections=self._pool_size, keepalive_expiry=KEEPALIVE_S
        )
        transport = HttpxAiohttpTransport(limits=limits) if self._via_aiohttp else None
        self._client = httpx.AsyncClient(
            base_url=self._base,
            limits=limits,
            transport=transport,
            timeout=httpx.Timeout(self._total, connect=self._connect_timeout),
        )
        return self._client

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
        client = self._client or self._open()
        total = self._total if timeout is None else timeout
        try:
            # httpx only knows per-phase timeouts (connect, read, write, pool); the total is ours.
            async with asyncio.timeout(total):
                response = await client.request(
                    method,
                    path,
                    content=body,
                    headers=headers,
                    timeout=httpx.Timeout(total, connect=self._connect_timeout),
                )
        except (httpx.TransportError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise remote_error(exc, self._base, classify) from exc
        return Reply(response.status_code, response.content, folded(response.headers.multi_items()))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

"""The one inter-service HTTP client of archbench, switchable between client stacks.

Every service calls every other service through :func:`open_transport`. The stack is a parameter because the choice of
HTTP client library can change the measured cost of a hop by 10x (``python -m bench.calibration.hops``,
docs/measurements.md): the report must measure an architecture, not a library.

* :mod:`~plumbing.transports.base`: the :class:`Transport` protocol, :class:`Reply`, :class:`RemoteCallError`;
* :mod:`~plumbing.transports.raw`: archbench's own HTTP/1.1 client (the default);
* :mod:`~plumbing.transports.asgi`: in-process calls to an ASGI app (the colocated topology);
* :mod:`~plumbing.transports.libraries`: aiohttp, httpx and httpx over aiohttp, imported only when chosen (together
  they cost about 0.2 s of start-up per process).
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp

from plumbing.transports.asgi import AsgiTransport
from plumbing.transports.base import ErrorKind, RemoteCallError, Reply, Transport
from plumbing.transports.raw import RawTransport

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
        return AsgiTransport(app, base_url, timeout=timeout)
    if stack == "raw":
        return RawTransport(base_url, pool_size=pool_size, timeout=timeout, connect_timeout=connect_timeout)
    from plumbing.transports import libraries  # imported on demand: see the module docstring

    if stack == "aiohttp":
        return libraries.AiohttpTransport(
            base_url, pool_size=pool_size, timeout=timeout, connect_timeout=connect_timeout
        )
    return libraries.HttpxTransport(
        base_url,
        pool_size=pool_size,
        timeout=timeout,
        connect_timeout=connect_timeout,
        via_aiohttp=stack == "httpx-aiohttp",
    )

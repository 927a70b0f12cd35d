"""What every client stack shares: the transport protocol, its reply and error, and error translation.

Two kinds of outcome, never mixed:

* an HTTP reply, whatever its status (404, 409, 503 ...), comes back as a :class:`Reply`;
* a transport failure (nothing or only part of a reply came back) raises :class:`RemoteCallError`. Such a call may
  still have run on the other side, so callers retry only idempotent, keyed operations.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

# Below uvicorn's default keep-alive (5 s): a pooled connection must expire on our side first, otherwise a request
# can be written on a socket the server is closing and fail with a spurious "reset".
KEEPALIVE_S: Final[float] = 4.0

ErrorKind = Literal["refused", "reset", "timeout", "unavailable"]


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


# -- error translation: once, at the boundary -------------------------------------------------------------------------

#: What a stack knows of its own library's exceptions: the kind one shows by itself, or None.
Classifier = Callable[[BaseException], ErrorKind | None]

_ERRNO_KINDS: Final[dict[int, ErrorKind]] = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ECONNABORTED: "reset",
    errno.ETIMEDOUT: "timeout",
}


def kind_of(exc: BaseException, classify: Classifier | None = None) -> ErrorKind | None:
    """The kind one exception shows by itself (``classify`` knows a library's own), or None if it says nothing."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return _ERRNO_KINDS[exc.errno]
    if classify is not None and (kind := classify(exc)) is not None:
        return kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "reset"
    if isinstance(exc, BaseExceptionGroup):
        return next((kind for sub in exc.exceptions if (kind := kind_of(sub, classify)) is not None), None)
    return None


def _cause_of(exc: BaseException) -> BaseException | None:
    """The exception ``exc`` wraps: its explicit cause, else the one it carries as first argument (httpcore's
    wrappers do), else the one being handled when it was raised."""
    if exc.__cause__ is not None:
        return exc.__cause__
    if exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    return None if exc.__suppress_context__ else exc.__context__


def remote_error(exc: BaseException, target: str, classify: Classifier | None = None) -> RemoteCallError:
    """Classify by the innermost exception that says something: wrappers relabel causes (httpx-aiohttp, for one,
    turns a server disconnect into ``httpx.ConnectTimeout``), the root cause does not lie."""
    chain: list[BaseException] = [exc]
    while (cause := _cause_of(chain[-1])) is not None and cause not in chain and len(chain) < 16:
        chain.append(cause)
    kinds = (kind for cause in reversed(chain) if (kind := kind_of(cause, classify)) is not None)
    return RemoteCallError(next(kinds, "unavailable"), target, f"{type(exc).__name__}: {exc}")


def folded(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case header names; join repeated headers as RFC 9110 allows."""
    folded: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        folded[key] = f"{folded[key]}, {value}" if key in folded else value
    return folded


class LoopBound:
    """Checks that a lazily created session is only used from the loop that created it."""

    _loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("this transport is bound to another event loop; open one transport per loop")
        return loop

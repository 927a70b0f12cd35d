"""W3C trace context: the ``traceparent`` of the request being handled, propagated to every internal call."""

from __future__ import annotations

import os
from contextvars import ContextVar, Token

_current: ContextVar[str | None] = ContextVar("traceparent", default=None)


def new_traceparent() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def begin(incoming: str | None) -> Token[str | None]:
    """Adopt the caller's trace (or none) for the duration of a request."""
    return _current.set(incoming)


def end(token: Token[str | None]) -> None:
    _current.reset(token)


def current() -> str | None:
    """The traceparent to send on internal calls made while handling the current request."""
    return _current.get()

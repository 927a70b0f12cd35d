"""What the domain needs of a database connection, on either engine: the protocols, the default lock wait, the
retryable conflict, and the clock of the time a traced request spends in the database.

A leaf module: the engines (:mod:`shop.db` for SQLite and the unit of work, :mod:`shop.postgres`) and the domain import
it, and it imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from time import perf_counter
from typing import Any, ParamSpec, Protocol, TypeVar

from shop.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")

LOCK_WAIT = 1.0
"""Default seconds a unit of work spends waiting for the write lock (SQLite) or running again after conflicts
(PostgreSQL) before it answers Unavailable: under the default call timeout between processes (2 s), so that a caller
hears the retryable refusal before it gives up on the call."""


class Conflict(Unavailable):
    """The transaction collided with a concurrent one and was rolled back; run the same block again.

    Raised by the PostgreSQL engine for a serialization failure (SQLSTATE 40001), a deadlock (40P01) or a row lock not
    obtained within the session's ``lock_timeout`` (55P03). :func:`shop.db.transactions` catches it (and nothing else)
    to run the block again; one that escapes (a plain ``with UnitOfWork``, or a block that had already committed part
    of its work) is what it derives from: :class:`~shop.errors.Unavailable`, a 503 the caller may retry. Not an HTTP
    409: nothing the caller sent is refused.
    """


class Cursor(Protocol):
    """What a query returns: its rows, and how many rows a write touched."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The connection the domain uses, on either engine: SQL in SQLite's dialect with ``?`` placeholders.

    ``catalog_size`` is a small per-connection cache (see ``Inventory.catalog_size``), ``lock_wait`` the seconds a
    unit of work may spend waiting for the write lock and running again after conflicts.
    """

    engine: str
    catalog_size: int | None
    lock_wait: float

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def try_begin(self, alone: bool = False) -> Exception | None:
        """Begin a write transaction without waiting: None once begun, or (nothing begun) the engine's refusal.

        SQLite takes the database's write lock (``BEGIN IMMEDIATE``), refused while another connection holds it, and
        every writer runs alone. PostgreSQL begins a SERIALIZABLE transaction beside the other writers, or ``alone``
        (a unit of work that collided several times) once they are done and before the next ones start: refused
        (a :class:`Conflict`) if that takes longer than the session's lock timeout. A collision with another writer
        surfaces later, at a statement or at COMMIT, as :class:`Conflict`."""
        ...

    def create_schema(self, *schemas: str) -> None:
        """Create the tables of the given contexts (idempotent; SQLite's dialect)."""
        ...

    def close(self) -> None: ...


class DatabaseClock:
    """Seconds spent in database calls while one traced request is handled: statements, fetches, commits, and the
    unit of work's backoff (waiting for the write lock, or before running again after a conflict)."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


DATABASE_TIME: ContextVar[DatabaseClock | None] = ContextVar("database_time", default=None)
"""The clock of the traced request being handled, or None. Set by the tracing middleware (``plumbing.tracing.begin``)
only for a sampled request, so an untraced database call pays one lookup of this variable and nothing more."""


def timed(clock: DatabaseClock, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``call(*args, **kwargs)``, its duration added to ``clock`` (even when it raises)."""
    started = perf_counter()
    try:
        return call(*args, **kwargs)
    finally:
        clock.seconds += perf_counter() - started


class TimedCursor:
    """A cursor whose fetches count on ``clock``: what a statement returns while a traced request is handled."""

    __slots__ = ("_clock", "_cursor")

    def __init__(self, cursor: Cursor, clock: DatabaseClock) -> None:
        self._cursor = cursor
        self._clock = clock

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return timed(self._clock, self._cursor.fetchone)

    def fetchall(self) -> list[Any]:
        return timed(self._clock, self._cursor.fetchall)

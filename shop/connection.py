"""What the domain needs of a database connection, on either engine: the protocols and the default lock wait.

A leaf module: the engines (:mod:`shop.db` for SQLite and the unit of work, :mod:`shop.postgres`) and the domain import
it, and it imports neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

LOCK_WAIT = 1.0
"""Default seconds a unit of work waits for the write lock before it answers Unavailable: under the default call
timeout between processes (2 s), so that a caller hears the retryable refusal before it gives up on the call."""


class Cursor(Protocol):
    """What a query returns: its rows, and how many rows a write touched."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The connection the domain uses, on either engine: SQL in SQLite's dialect with ``?`` placeholders.

    ``catalog_size`` is a small per-connection cache (see ``Inventory.catalog_size``), ``lock_wait`` the seconds a
    unit of work waits for the write lock.
    """

    engine: str
    catalog_size: int | None
    lock_wait: float

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def try_begin(self) -> Exception | None:
        """Begin a transaction holding the database's write lock, without waiting: None once begun, or (nothing
        begun) the engine's refusal when another connection holds the lock."""
        ...

    def create_schema(self, *schemas: str) -> None:
        """Create the tables of the given contexts (idempotent; SQLite's dialect)."""
        ...

    def close(self) -> None: ...

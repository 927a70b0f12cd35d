"""SQLite connections and the unit of work.

Every context works on a connection inside a transaction its caller owns. The caller opens a :class:`UnitOfWork`,
calls one or several contexts, and commits explicitly; leaving the block without ``commit()`` rolls back.

Queries run synchronously on the caller's thread: a point query on a local SQLite file costs tens of microseconds,
less than a hop to a worker thread would, and a transaction with no ``await`` inside cannot interleave with another
on the same event loop.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Self

MAX_ID = 2**63 - 1


class Connection(sqlite3.Connection):
    """A connection that can keep small per-connection caches (see ``Inventory.catalog_size``)."""

    catalog_size: int | None = None


def connect(path: str | Path) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with transactions managed explicitly by :class:`UnitOfWork`."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0, factory=Connection)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives the crash of a process (SIGKILL) with every committed transaction; only an OS crash
    # or power loss can lose the last ones.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_schema(conn: sqlite3.Connection, *schemas: str) -> None:
    """Create the tables of the given contexts (idempotent)."""
    for schema in schemas:
        conn.executescript(schema)


class UnitOfWork:
    """One transaction: ``commit()`` explicitly, otherwise everything is rolled back on exit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Self:
        # IMMEDIATE takes the write lock at once, so two processes sharing a file never deadlock on lock upgrade.
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        # Writes after commit() in the same block belong to a new transaction that is rolled back unless committed
        # again; without this BEGIN the connection would be in autocommit mode and keep them.
        self.conn.execute("BEGIN")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.conn.execute("ROLLBACK")


def valid_id(value: int) -> bool:
    """Whether ``value`` can be an id (SQLite stores signed 64-bit integers)."""
    return 1 <= value <= MAX_ID

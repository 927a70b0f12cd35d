"""Database connections and the unit of work, on two engines: SQLite (a file per database) and PostgreSQL.

Every context works on a :class:`Connection` inside a transaction its caller owns. The caller opens a
:class:`UnitOfWork`, calls one or several contexts, and commits explicitly; leaving the block without ``commit()``
rolls back. The domain's SQL is written once, in SQLite's dialect (``?`` placeholders); the PostgreSQL engine
(:mod:`shop.postgres`) translates it, and its schemas, in one place. :func:`connect` picks the engine from a database
URL: ``postgresql://...`` or ``postgres://...``, else ``sqlite:///PATH`` or a plain path.

Queries run synchronously on the caller's thread: a point query on a local SQLite file costs tens of microseconds,
less than a hop to a worker thread would, and a transaction with no ``await`` inside cannot interleave with another
on the same event loop. On PostgreSQL a query is a round trip to the server (about a hundred microseconds on
loopback), still run on the loop; docs/postgres.md measures what that costs and why it stays so.

What must never run on the event loop is a *wait*. The write lock may be held by another connection (a replica sharing
the database, an operator's shell, a backup) for as long as it likes; waiting for it inside the engine would sleep on
the loop's thread, freezing every request of the process, reads included. So a connection never waits inside the
engine (SQLite: busy timeout 0 once the schema exists; PostgreSQL: the write lock is taken with a try-lock), and
``async with UnitOfWork(conn)`` waits for the write lock by retrying with backoff on the loop, for at most the
connection's :attr:`Connection.lock_wait` seconds; then it raises :class:`~shop.errors.Unavailable` (503, retryable).
Reads take no lock (WAL; MVCC), so they keep answering meanwhile. Writers of one database are serialized on both
engines, so the domain's read-then-write steps behave the same on both. A "database is locked" error from SQLite, and
a serialization failure, deadlock, lock or statement timeout or lost connection from PostgreSQL, become
``Unavailable`` here, at the boundary, and nowhere else.

While a traced request is handled, both engines add the time of its statements, fetches and commits, and the unit of
work its wait for the write lock, to the request's clock (:data:`shop.connection.DATABASE_TIME`): the database's share
of the per-hop breakdown.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any, Self

import psycopg

from shop.connection import DATABASE_TIME, LOCK_WAIT, Connection, DatabaseClock, timed
from shop.errors import Unavailable

MAX_ID = 2**63 - 1
SETUP_BUSY_TIMEOUT = 10.0
"""Seconds SQLite itself may wait while a connection is set up (WAL mode, schema), before any request is served."""
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.025
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
"""What a constraint violation (a UNIQUE key taken) raises, on either engine."""
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, Unavailable)
"""Whatever a database operation may fail with, on either engine."""


class _TimedCursor(sqlite3.Cursor):
    """A cursor whose fetches (SQLite steps through the rows there) count on the traced request's clock."""

    clock: DatabaseClock

    def fetchone(self) -> Any:
        return timed(self.clock, super().fetchone)

    def fetchall(self) -> list[Any]:
        return timed(self.clock, super().fetchall)


_execute = sqlite3.Connection.execute
_executemany = sqlite3.Connection.executemany


class SQLiteConnection(sqlite3.Connection):
    """A SQLite connection in WAL mode, with transactions managed explicitly by :class:`UnitOfWork`.

    While a traced request is handled (:data:`shop.connection.DATABASE_TIME` is set), its statements and their fetches
    count on the request's clock; otherwise a statement costs one look-up more than sqlite3's own."""

    engine = "sqlite"
    catalog_size: int | None = None
    lock_wait: float = LOCK_WAIT

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        clock = DATABASE_TIME.get()
        if clock is None:
            return _execute(self, sql, parameters)
        cursor = self.cursor(_TimedCursor)
        cursor.clock = clock
        return timed(clock, cursor.execute, sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        clock = DATABASE_TIME.get()
        if clock is None:
            return _executemany(self, sql, parameters)
        return timed(clock, _executemany, self, sql, parameters)

    def try_begin(self) -> Exception | None:
        # IMMEDIATE takes the write lock at once, so two processes sharing a file never deadlock on lock upgrade.
        try:
            self.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return exc
            raise
        return None

    def create_schema(self, *schemas: str) -> None:
        for schema in schemas:
            self.executescript(schema)
        self.execute("PRAGMA busy_timeout = 0")


def connect(url: str | Path, *, lock_wait: float = LOCK_WAIT, password: str | None = None) -> Connection:
    """Open the database at ``url`` (``postgresql://...``, ``sqlite:///PATH`` or a path).

    ``lock_wait``: seconds a unit of work waits for the write lock (see the module's docstring); ``password``: for a
    PostgreSQL URL without one (it travels through the environment, never through the URL written to disk)."""
    if lock_wait < 0:
        raise ValueError(f"lock_wait must be >= 0, not {lock_wait}")
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from shop.postgres import PostgresConnection  # imported here: a SQLite process never loads the engine

        return PostgresConnection(text, lock_wait=lock_wait, password=password)
    return connect_sqlite(text.removeprefix("sqlite://"), lock_wait=lock_wait)


def connect_sqlite(path: str | Path, *, lock_wait: float = LOCK_WAIT) -> SQLiteConnection:
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=SETUP_BUSY_TIMEOUT, factory=SQLiteConnection
    )
    assert isinstance(conn, SQLiteConnection)
    conn.lock_wait = lock_wait
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives the crash of a process (SIGKILL) with every committed transaction; only an OS crash
    # or power loss can lose the last ones.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_schema(conn: Connection, *schemas: str) -> None:
    """Create the tables of the given contexts (idempotent); from then on, the engine never sleeps on a lock."""
    conn.create_schema(*schemas)


def columns_of(conn: Connection, table: str) -> list[str]:
    """The column names of ``table``, in order (none when it does not exist). SQLite only (``PRAGMA``): schema
    upgrades concern files made by earlier versions, and no PostgreSQL database predates them."""
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})").fetchall()]


def add_columns(conn: Connection, tables: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    """Give each existing table of ``tables`` the ``(name, declaration)`` columns it lacks (idempotent).

    For a database made by an earlier version of the schema: ``CREATE TABLE IF NOT EXISTS`` leaves an existing table
    as it is. A table that does not exist yet is left to :func:`create_schema`. Run it before that, while SQLite may
    still wait for the lock: the columns are re-read under the write lock, so that processes starting together on one
    file add each column once.
    """

    def missing() -> list[tuple[str, str, str]]:
        found = []
        for table, columns in tables.items():
            have = columns_of(conn, table)
            found += [(table, name, decl) for name, decl in columns if have and name not in have]
        return found

    if conn.engine != "sqlite" or not missing():
        return
    with UnitOfWork(conn) as uow:
        for table, name, decl in missing():
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        uow.commit()


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite refusing because another connection holds a lock ("database is locked")."""
    return isinstance(exc, sqlite3.OperationalError) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _BUSY


def unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"the database is busy with another writer, retry later ({exc})")


class UnitOfWork:
    """One transaction: ``commit()`` explicitly, otherwise everything is rolled back on exit.

    ``async with`` waits for the write lock off the loop's clock (retries with backoff) up to the connection's
    ``lock_wait``; plain ``with`` does not wait at all. Either way a lock held elsewhere is :class:`Unavailable`.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Self:
        refused = self.conn.try_begin()
        if refused is not None:
            raise unavailable(refused) from refused
        return self

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + getattr(self.conn, "lock_wait", LOCK_WAIT)
        backoff = _FIRST_BACKOFF
        while True:
            refused = self.conn.try_begin()
            if refused is None:
                return self
            left = deadline - loop.time()
            if left <= 0:
                raise unavailable(refused) from refused
            # Full jitter: writers of several processes waiting for one lock do not retry in step.
            slept = perf_counter()
            await asyncio.sleep(min(left, random.uniform(0, backoff)))
            clock = DATABASE_TIME.get()
            if clock is not None:  # the wait for the lock is time in the database (the attempts count on their own)
                clock.seconds += perf_counter() - slept
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise unavailable(exc) from exc
            raise
        # Writes after commit() in the same block belong to a new transaction that is rolled back unless committed
        # again; without this BEGIN the connection would be in autocommit mode and keep them.
        self.conn.execute("BEGIN")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if exc is not None and is_busy(exc):
            assert isinstance(exc, sqlite3.OperationalError)
            raise unavailable(exc) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def valid_id(value: int) -> bool:
    """Whether ``value`` can be an id (SQLite stores signed 64-bit integers)."""
    return 1 <= value <= MAX_ID

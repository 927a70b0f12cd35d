"""Database connections and the unit of work, on two engines: SQLite (a file per database) and PostgreSQL.

Every context works on a :class:`Connection` inside a transaction its caller owns. The caller opens a unit of work,
calls one or several contexts, and commits explicitly; leaving the block without ``commit()`` rolls back. Code that
serves requests writes it ``async for uow in transactions(conn): with uow: ...`` (:func:`transactions`), which waits
and runs the block again when it must; start-up work and tests may use a plain ``with UnitOfWork(conn)``, which does
neither. The domain's SQL is written once, in SQLite's dialect (``?`` placeholders); the PostgreSQL engine
(:mod:`shop.postgres`) translates it, and its schemas, in one place. :func:`connect` picks the engine from a database
URL: ``postgresql://...`` or ``postgres://...``, else ``sqlite:///PATH`` or a plain path.

Queries run synchronously on the caller's thread: a point query on a local SQLite file costs tens of microseconds,
less than a hop to a worker thread would, and a transaction with no ``await`` inside cannot interleave with another
on the same event loop. On PostgreSQL a query is a round trip to the server (about a hundred microseconds on
loopback), still run on the loop; docs/postgres.md measures what that costs and why it stays so.

The domain's read-then-write steps (reserve, charge, refund, release, the idempotency look-up, deposit, the claims of
the saga log and the outbox) need writers that behave as if they ran one at a time. SQLite gives that with its
database-wide write lock (``BEGIN IMMEDIATE``). PostgreSQL gives it with SERIALIZABLE transactions and no lock of the
whole database, so writers of different rows run side by side; the price is that the server may roll back one of two
colliding transactions (:class:`~shop.connection.Conflict`), which must then run again. :func:`transactions` does:
it rolls the block back and runs it again, so a block must do nothing outside the database that a second run would
repeat wrongly.

What must never run on the event loop is a *wait*. The write lock, or a row lock, may be held by another connection (a
replica sharing the database, an operator's shell, a backup) for as long as it likes; waiting for it inside the engine
would sleep on the loop's thread, freezing every request of the process, reads included. So a connection waits inside
the engine not at all on SQLite (busy timeout 0 once the schema exists) and briefly on PostgreSQL (for a row lock, at
most the session's ``lock_timeout``, :data:`shop.postgres.LOCK_TIMEOUT_MS`, then a Conflict), and :func:`transactions`
waits for the write lock, or before running the block again, with backoff awaited on the loop, for at most the
connection's :attr:`Connection.lock_wait` seconds in all; then it raises :class:`~shop.errors.Unavailable` (503,
retryable). Reads take no lock (WAL; MVCC), so they keep answering meanwhile. A "database is locked" error from SQLite
becomes ``Unavailable`` here; the PostgreSQL engine turns a serialization failure, deadlock or lock timeout into
``Conflict``, and a statement timeout or lost connection into ``Unavailable``, at its boundary; nothing else sees an
engine's errors but its integrity errors (:data:`INTEGRITY_ERRORS`).

While a traced request is handled, both engines add the time of its statements, fetches and commits, and the unit of
work its backoff, to the request's clock (:data:`shop.connection.DATABASE_TIME`): the database's share of the per-hop
breakdown.
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

from shop.connection import DATABASE_TIME, LOCK_WAIT, Conflict, Connection, DatabaseClock, timed
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

    def try_begin(self, alone: bool = False) -> Exception | None:  # every SQLite writer runs alone
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
    return Unavailable(f"the database is busy with other writers, retry later ({exc})")


class _Transaction:
    """What :class:`UnitOfWork` and :class:`Attempt` share: ``commit()``, and the rollback of whatever was not
    committed when the block ends."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.committed = False  # commit() succeeded in this block: running it again would repeat that part

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise unavailable(exc) from exc
            raise
        self.committed = True
        # Writes after commit() in the same block belong to a new transaction that is rolled back unless committed
        # again; without this BEGIN the connection would be in autocommit mode and keep them.
        self.conn.execute("BEGIN")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if exc is not None and is_busy(exc):
            assert isinstance(exc, sqlite3.OperationalError)
            raise unavailable(exc) from exc
        return self._swallowed(exc)

    def _swallowed(self, exc: BaseException | None) -> bool:
        """Whether the exception that ended the block stops here (the block is then run again)."""
        return False


class UnitOfWork(_Transaction):
    """One transaction: ``commit()`` explicitly, otherwise everything is rolled back on exit.

    Plain ``with``, which begins at once and never waits nor runs again: a write lock held elsewhere is
    :class:`Unavailable`, and so is a :class:`~shop.connection.Conflict`. For start-up and schema work and for tests;
    code that serves requests uses :func:`transactions`.
    """

    def __enter__(self) -> Self:
        refused = self.conn.try_begin()
        if refused is not None:
            raise unavailable(refused) from refused
        self.committed = False
        return self


class Attempt(_Transaction):
    """One run of a :func:`transactions` block, its transaction already begun: enter it once (``with uow:``).

    Leaving the block rolls back whatever was not committed. A :class:`~shop.connection.Conflict` raised before any
    ``commit()`` succeeded is swallowed here and recorded, so that the loop runs the block again; after a successful
    ``commit()`` it propagates (running the block again would repeat the committed part).
    """

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.entered = False
        self.conflict: Conflict | None = None

    def __enter__(self) -> Self:
        if self.entered:
            raise RuntimeError("an attempt of transactions() is entered once")
        self.entered = True
        return self

    def _swallowed(self, exc: BaseException | None) -> bool:
        if isinstance(exc, Conflict) and not self.committed:
            self.conflict = exc
            return True
        return False


class Transactions:
    """The attempts of one unit of work, as an asynchronous iterator: see :func:`transactions`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.attempts = 0
        self._attempt: Attempt | None = None
        self._deadline: float | None = None
        self._backoff = _FIRST_BACKOFF

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Attempt:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.conn.lock_wait
        previous = self._attempt
        if previous is not None:
            if not previous.entered:
                self._attempt = None
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise RuntimeError("each attempt of transactions() must be entered: `with uow:`")
            if previous.conflict is None:  # the block ran to its end
                raise StopAsyncIteration
            await self._back_off(previous.conflict)
        # After RUNS_BESIDE runs that collided the block runs alone: beside the same writers it could lose every time
        # (two saturated workers starved a checkout through 100 runs and lock_wait), alone it cannot collide.
        alone = self.attempts >= RUNS_BESIDE
        while (refused := self.conn.try_begin(alone)) is not None:
            await self._back_off(refused)
        self.attempts += 1
        self._attempt = Attempt(self.conn)
        return self._attempt

    async def _back_off(self, reason: Exception) -> None:
        """Sleep on the loop before the next try (full jitter, doubling), or give up once ``lock_wait`` is spent."""
        assert self._deadline is not None
        left = self._deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise unavailable(reason) from reason
        # Full jitter: writers of several processes colliding on one lock or row do not retry in step.
        slept = perf_counter()
        await asyncio.sleep(min(left, random.uniform(0, self._backoff)))
        clock = DATABASE_TIME.get()
        if clock is not None:  # the backoff is time in the database (the attempts count on their own)
            clock.seconds += perf_counter() - slept
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)


RUNS_BESIDE = 3
"""Runs of a unit of work beside the other writers (on PostgreSQL) before it runs alone, after as many conflicts.

Running alone costs the other writers a wait (on their event loops, at most the session's lock timeout) and makes
the writers of the database one at a time while it runs: running alone after every conflict, the monolith's
checkout-heavy mix with two workers on PostgreSQL held 380 req/s within the SLO, 500 after three conflicts, 600 never
(two runs each, scaling experiment; docs/postgres.md). Never running alone starved a few checkouts to a 503 in a
stress test."""


def transactions(conn: Connection) -> Transactions:
    """A unit of work that waits and runs again, for code serving requests::

        async for uow in transactions(conn):
            with uow:
                ...  # statements only: no await, no effect outside the database
                uow.commit()

    Each attempt begins a transaction (on SQLite waiting for the write lock, with backoff on the loop) and the block
    runs once in it; ``commit()`` is explicit, and leaving the block without it rolls back. The loop ends when the
    block does, a ``return`` inside it included. When the block ends in a :class:`~shop.connection.Conflict` (only
    PostgreSQL raises one), it is rolled back and run again after a jittered backoff awaited on the loop. Waiting and
    running again share the connection's ``lock_wait`` seconds; then :class:`~shop.errors.Unavailable` (503). Any
    other exception leaves the loop as it is.

    Because the block may run more than once, it must do nothing outside the database that a second run would repeat
    wrongly (change in-memory state, call another process): do that after the loop, from what the block left.
    """
    return Transactions(conn)


def valid_id(value: int) -> bool:
    """Whether ``value`` can be an id (SQLite stores signed 64-bit integers)."""
    return 1 <= value <= MAX_ID

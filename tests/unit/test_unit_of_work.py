"""The unit of work: commit explicitly, roll back by default (STYLE 2); its retrying form, ``transactions``; and the
connection settings it relies on.

Persistence is checked through a second connection to the same file, which sees only what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable

import pytest

from shop import users
from shop.connection import Conflict, Connection
from shop.db import MAX_ID, Attempt, Transactions, UnitOfWork, create_schema, transactions, valid_id
from shop.errors import Unavailable

OpenDb = Callable[..., sqlite3.Connection]


@pytest.fixture
def conns(open_db: OpenDb) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Two connections to one file holding the users table: a writer and an observer."""
    return open_db(users.SCHEMA), open_db(users.SCHEMA)


def emails(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT email FROM users ORDER BY id").fetchall()]


def insert(conn: Connection, email: str) -> None:
    conn.execute("INSERT INTO users (email, name) VALUES (?, 'N')", (email,))


@contextlib.asynccontextmanager
async def loop_gaps(interval: float) -> AsyncIterator[list[float]]:
    """While the block runs, a task on the running loop sleeps ``interval`` seconds at a time; the list holds the
    seconds between its wake-ups (a gap far over ``interval``: the loop was kept from it)."""
    gaps: list[float] = []

    async def watch() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    try:
        yield gaps
    finally:
        watcher.cancel()


async def run(loop: Transactions, body: Callable[[Attempt], None]) -> None:
    """``body(uow)`` as the block of ``async for uow in loop: with uow: ...``."""
    async for uow in loop:
        with uow:
            body(uow)


def test_commit_persists(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, observer = conns

    with UnitOfWork(writer) as uow:
        insert(writer, "a@x")
        uow.commit()

    assert emails(observer) == ["a@x"]
    assert not writer.in_transaction


def test_leaving_without_commit_rolls_back(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, observer = conns

    with UnitOfWork(writer):
        insert(writer, "a@x")
        assert emails(writer) == ["a@x"]

    assert emails(writer) == []
    assert emails(observer) == []
    assert not writer.in_transaction


def test_an_exception_rolls_back_and_propagates(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, observer = conns

    def insert_then_fail() -> None:
        with UnitOfWork(writer):
            insert(writer, "a@x")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        insert_then_fail()

    assert emails(writer) == []
    assert emails(observer) == []


def test_a_failed_statement_rolls_back_the_earlier_ones(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, observer = conns
    insert(writer, "taken@x")

    def insert_both() -> None:
        with UnitOfWork(writer) as uow:
            insert(writer, "a@x")
            insert(writer, "taken@x")
            uow.commit()

    with pytest.raises(sqlite3.IntegrityError):
        insert_both()

    assert emails(observer) == ["taken@x"]


def test_nothing_is_visible_to_others_before_commit(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, observer = conns

    with UnitOfWork(writer) as uow:
        insert(writer, "a@x")
        assert emails(observer) == []
        uow.commit()

    assert emails(observer) == ["a@x"]


def test_a_unit_of_work_holds_the_write_lock_from_the_start(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    # BEGIN IMMEDIATE: a second writer is turned away at once rather than deadlocking later on a lock upgrade.
    writer, other = conns
    other.execute("PRAGMA busy_timeout = 0")

    with UnitOfWork(writer):
        with pytest.raises(Unavailable) as refused, UnitOfWork(other):
            pass
        assert isinstance(refused.value.__cause__, sqlite3.OperationalError)
        assert "locked" in str(refused.value.__cause__)
        assert not other.in_transaction


def test_a_unit_of_work_can_be_used_again(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, observer = conns
    uow = UnitOfWork(writer)

    with uow:
        insert(writer, "a@x")
        uow.commit()
    with uow:
        insert(writer, "b@x")

    assert emails(observer) == ["a@x"]


def keeps_only_the_commit_when_the_block_fails(writer: Connection, observer: Connection) -> None:
    """A unit of work commits, writes again, then raises: the observer sees the commit only (either engine)."""

    def commit_then_write_then_fail() -> None:
        with UnitOfWork(writer) as uow:
            insert(writer, "a@x")
            uow.commit()
            insert(writer, "b@x")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        commit_then_write_then_fail()
    assert emails(observer) == ["a@x"]


def test_writes_after_commit_are_not_kept_when_the_block_fails(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    keeps_only_the_commit_when_the_block_fails(*conns)


def test_connect_settings(open_db: OpenDb) -> None:
    conn = open_db()

    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.isolation_level is None  # transactions belong to UnitOfWork, not to the sqlite3 module
    assert not conn.in_transaction


def test_create_schema_is_idempotent(open_db: OpenDb) -> None:
    conn = open_db(users.SCHEMA)
    insert(conn, "a@x")

    create_schema(conn, users.SCHEMA, users.SCHEMA)

    assert emails(conn) == ["a@x"]


@pytest.mark.parametrize(("value", "valid"), [(1, True), (MAX_ID, True), (0, False), (-1, False), (MAX_ID + 1, False)])
def test_valid_id(value: int, valid: bool) -> None:
    assert valid_id(value) is valid


async def test_async_unit_of_work_waits_for_the_lock_without_blocking_the_loop(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    holder, writer = conns
    holder.execute("BEGIN IMMEDIATE")
    await writes_once_the_holder_lets_go(holder, writer)


async def writes_once_the_holder_lets_go(holder: Connection, writer: Connection) -> None:
    """``holder`` is in the way of ``writer``'s insert of a@x (SQLite: it holds the write lock; PostgreSQL: it
    inserted a@x and has not committed): the ``transactions`` unit of work of ``writer`` waits or runs again, the
    loop keeps running meanwhile, and the write lands once the holder rolls back (0.2 s later). Either engine."""

    async def release_soon() -> None:
        await asyncio.sleep(0.2)
        holder.execute("ROLLBACK")

    releaser = asyncio.create_task(release_soon())
    async with loop_gaps(0.005) as gaps:
        async for uow in transactions(writer):
            with uow:
                insert(writer, "a@x")
                uow.commit()
    await releaser
    assert emails(holder) == ["a@x"]
    assert len(gaps) >= 10  # the loop kept running while the unit of work waited


async def test_async_unit_of_work_gives_up_after_lock_wait(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    holder, writer = conns
    writer.lock_wait = 0.1  # type: ignore[attr-defined]
    holder.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    with pytest.raises(Unavailable):
        await run(transactions(writer), lambda uow: None)
    assert 0.1 <= time.perf_counter() - started < 0.5
    assert not writer.in_transaction
    holder.execute("ROLLBACK")


# --- transactions(): the block runs again after a Conflict -----------------------------------------------------------
# Only PostgreSQL raises Conflict; raising it by hand shows the loop's rules on either engine
# (tests/unit/test_postgres_engine.py makes real ones).


async def test_a_block_that_ends_runs_once_and_a_return_leaves_it(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, observer = conns

    async def register(email: str) -> str:
        runs = 0
        async for uow in transactions(writer):
            with uow:
                runs += 1
                if email in emails(writer):
                    return "taken"
                insert(writer, email)
                uow.commit()
        assert runs == 1
        return "new"

    assert await register("a@x") == "new"
    assert await register("a@x") == "taken"
    assert emails(observer) == ["a@x"]
    assert not writer.in_transaction


async def test_a_conflict_rolls_back_and_runs_the_block_again(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, observer = conns
    loop = transactions(writer)
    async for uow in loop:
        with uow:
            insert(writer, f"attempt{loop.attempts}@x")
            if loop.attempts < 3:
                raise Conflict("collided")
            uow.commit()

    assert loop.attempts == 3
    assert emails(observer) == ["attempt3@x"]  # the rolled-back attempts left nothing
    assert not writer.in_transaction


async def test_any_other_exception_leaves_the_loop_at_once(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, observer = conns
    loop = transactions(writer)

    def insert_then_fail(uow: Attempt) -> None:
        insert(writer, "a@x")
        raise Unavailable("a dependency is down")

    with pytest.raises(Unavailable) as raised:
        await run(loop, insert_then_fail)
    assert type(raised.value) is Unavailable
    assert loop.attempts == 1
    assert emails(observer) == []


async def test_a_conflict_after_a_commit_is_not_run_again(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    # Running the block again would repeat what it committed: the conflict leaves as it is (Unavailable, a 503).
    writer, observer = conns
    loop = transactions(writer)

    def commit_then_collide(uow: Attempt) -> None:
        insert(writer, "a@x")
        uow.commit()
        insert(writer, "b@x")
        raise Conflict("collided")

    with pytest.raises(Conflict):
        await run(loop, commit_then_collide)
    assert loop.attempts == 1
    assert emails(observer) == ["a@x"]
    assert not writer.in_transaction


async def test_conflicts_until_lock_wait_end_as_unavailable_without_blocking_the_loop(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    writer, observer = conns
    writer.lock_wait = 0.2  # type: ignore[attr-defined]
    loop = transactions(writer)

    def always_collide(uow: Attempt) -> None:
        insert(writer, "a@x")
        raise Conflict("collided")

    started = time.perf_counter()
    async with loop_gaps(0.005) as gaps:
        with pytest.raises(Unavailable) as refused:
            await run(loop, always_collide)
        waited = time.perf_counter() - started

    assert not isinstance(refused.value, Conflict)  # the loop's own refusal, caused by the last conflict
    assert isinstance(refused.value.__cause__, Conflict)
    assert 0.2 <= waited < 0.6
    assert loop.attempts >= 5  # backoff of 1 ms doubling to 25 ms
    assert len(gaps) >= 10  # the backoff was awaited on the loop
    assert emails(observer) == []
    assert not writer.in_transaction


async def test_an_attempt_must_be_entered(conns: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    writer, _ = conns

    async def never_enter() -> None:
        async for _uow in transactions(writer):
            pass

    with pytest.raises(RuntimeError, match="entered"):
        await never_enter()
    assert not writer.in_transaction

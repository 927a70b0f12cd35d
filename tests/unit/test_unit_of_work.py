"""The unit of work: commit explicitly, roll back by default (STYLE 2); and the connection settings it relies on.

Persistence is checked through a second connection to the same file, which sees only what was committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

import pytest

from shop import users
from shop.connection import Connection
from shop.db import MAX_ID, UnitOfWork, create_schema, valid_id
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
    """``holder`` holds the write lock: an ``async with`` unit of work of ``writer`` waits for it, the loop keeps
    running meanwhile, and the write lands once the holder rolls back (0.2 s later). Either engine."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def release_soon() -> None:
        await asyncio.sleep(0.2)
        holder.execute("ROLLBACK")

    ticker, releaser = asyncio.create_task(tick()), asyncio.create_task(release_soon())
    async with UnitOfWork(writer) as uow:
        insert(writer, "a@x")
        uow.commit()
    ticker.cancel()
    await releaser
    assert emails(holder) == ["a@x"]
    assert ticks >= 10  # the loop kept running while the unit of work waited


async def test_async_unit_of_work_gives_up_after_lock_wait(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    holder, writer = conns
    writer.lock_wait = 0.1  # type: ignore[attr-defined]
    holder.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    with pytest.raises(Unavailable):
        async with UnitOfWork(writer):
            pass
    assert 0.1 <= time.perf_counter() - started < 0.5
    assert not writer.in_transaction
    holder.execute("ROLLBACK")

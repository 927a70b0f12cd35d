"""The normal (uncontended) path of the database boundary: a point read, and a write unit of work entered with
``with`` (no wait) and run by ``transactions`` (waits for the lock on the loop, runs again after a conflict). Figures
in docs/hardening.md."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from shop.db import UnitOfWork, connect, create_schema, transactions

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);"
BATCH = 100


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "bench.db")
    create_schema(conn, SCHEMA)
    conn.execute("INSERT INTO t (v) VALUES (1)")
    yield conn
    conn.close()


def update(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE t SET v = v + 1 WHERE id = 1")


@pytest.mark.benchmark(group="unit of work")
def test_read(benchmark: BenchmarkFixture, conn: sqlite3.Connection) -> None:
    benchmark(lambda: conn.execute("SELECT v FROM t WHERE id = 1").fetchone())


@pytest.mark.benchmark(group="unit of work")
def test_write_with(benchmark: BenchmarkFixture, conn: sqlite3.Connection) -> None:
    def write() -> None:
        with UnitOfWork(conn) as uow:
            update(conn)
            uow.commit()

    benchmark(write)


@pytest.mark.benchmark(group="unit of work")
def test_write_transactions_batch_of_100(benchmark: BenchmarkFixture, conn: sqlite3.Connection) -> None:
    async def writes() -> None:
        for _ in range(BATCH):
            async for uow in transactions(conn):
                with uow:
                    update(conn)
                    uow.commit()

    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(writes()))
    finally:
        loop.close()

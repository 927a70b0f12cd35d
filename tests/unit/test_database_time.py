"""The database's share of a traced request: the engines count the time of its database calls on a clock of the
request's own, a server span carries it (``db_us``), and the breakdown reports it beside each component's time."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

import msgspec
import psycopg

from bench.system.traces import breakdown
from plumbing import tracing
from plumbing.tracing import Span
from shop import users
from shop.connection import DATABASE_TIME, Connection, DatabaseClock
from shop.db import UnitOfWork, transactions
from tests.unit.test_unit_of_work import emails, insert

OpenAny = Callable[..., Connection]
TRACE = "a" * 32


def span(span_id: str, parent_id: str | None, kind: str, app: str, start: int, duration: int, db: int = 0) -> Span:
    return Span(TRACE, span_id, parent_id, kind, app, "op", start, duration, 10, 20, 200, db_us=db)


def test_the_breakdown_reports_each_components_time_in_the_database_beside_its_own_time() -> None:
    # gateway (1000 us, no data) -> orders (800 us, 300 of them in its database) -> payments (200 us, 150 in its db);
    # orders is called twice by the gateway: its two server spans add up.
    trace = [
        span("g" * 16, None, "server", "gateway", 0, 1000),
        span("c1" * 8, "g" * 16, "client", "gateway", 100, 500),
        span("o1" * 8, "c1" * 8, "server", "orders", 150, 400, db=200),
        span("c2" * 8, "o1" * 8, "client", "orders", 200, 250),
        span("p1" * 8, "c2" * 8, "server", "payments", 220, 200, db=150),
        span("c3" * 8, "g" * 16, "client", "gateway", 700, 250),
        span("o2" * 8, "c3" * 8, "server", "orders", 720, 200, db=100),
    ]

    summary, hops = breakdown(trace)

    assert summary["in_gateway_us"] == 1000 - 500 - 250
    assert summary["db_gateway_us"] == 0
    assert summary["in_orders_us"] == (400 - 250) + 200
    assert summary["db_orders_us"] == 200 + 100
    assert summary["in_payments_us"] == 200
    assert summary["db_payments_us"] == 150
    assert [(h["caller"], h["callee"], h["callee_us"], h["callee_db_us"]) for h in hops] == [
        ("gateway", "orders", 400.0, 200.0),
        ("orders", "payments", 200.0, 150.0),
        ("gateway", "orders", 200.0, 100.0),
    ]


def test_a_hop_whose_callee_wrote_no_span_has_no_database_time() -> None:
    trace = [span("g" * 16, None, "server", "gateway", 0, 1000), span("c" * 16, "g" * 16, "client", "gateway", 0, 9)]

    _, hops = breakdown(trace)

    assert hops[0]["callee"] == "?"
    assert hops[0]["callee_db_us"] != hops[0]["callee_db_us"]  # NaN: unknown, not zero


def test_a_span_line_written_before_db_us_existed_still_decodes() -> None:
    old = b'{"trace_id":"t","span_id":"s","parent_id":null,"kind":"server","app":"a","name":"n","start_us":1,'
    old += b'"duration_us":2,"bytes_in":3,"bytes_out":4,"status":200}'

    assert msgspec.json.decode(old, type=Span).db_us == 0


def test_a_traced_request_gets_a_clock_of_its_own_and_its_server_span_the_time_on_it() -> None:
    tracing.RECORDER.recent.clear()
    outer = tracing.begin(tracing.traceparent(TRACE, "b" * 16), "orders")
    assert outer is not None
    outer_clock = DATABASE_TIME.get()
    assert outer_clock is not None
    outer_clock.seconds = 0.002

    inner = tracing.begin(tracing.traceparent(TRACE, "c" * 16), "payments")  # a nested handler (colocated)
    assert inner is not None
    inner_clock = DATABASE_TIME.get()
    assert inner_clock is not None
    assert inner_clock is not outer_clock
    inner_clock.seconds = 0.001
    tracing.end(inner, "charge", 0.004, 0, 0, 200)
    assert DATABASE_TIME.get() is outer_clock  # the caller's clock is back, untouched by the callee's
    tracing.end(outer, "checkout", 0.01, 0, 0, 201)

    assert DATABASE_TIME.get() is None
    assert [(s.app, s.db_us) for s in tracing.RECORDER.recent] == [("payments", 1000), ("orders", 2000)]


def test_an_untraced_request_has_no_clock() -> None:
    assert tracing.begin(None, "orders") is None
    assert tracing.begin(tracing.traceparent(TRACE, "b" * 16), "gateway", trusted=False) is None
    assert DATABASE_TIME.get() is None


def test_statements_fetches_and_commits_count_only_while_a_request_is_traced(engine_db: OpenAny) -> None:
    conn = engine_db(users.SCHEMA)
    assert type(conn.execute("SELECT 1")) in (sqlite3.Cursor, psycopg.Cursor)  # the engine's own: nothing wrapped

    clock = DatabaseClock()
    token = DATABASE_TIME.set(clock)
    try:
        with UnitOfWork(conn) as uow:
            insert(conn, "a@x")
            after_insert = clock.seconds
            uow.commit()
        after_commit = clock.seconds
        assert emails(conn) == ["a@x"]  # a statement and its fetch
    finally:
        DATABASE_TIME.reset(token)

    assert 0 < after_insert < after_commit < clock.seconds


async def test_the_wait_for_the_write_lock_counts_as_time_in_the_database(engine_db: OpenAny) -> None:
    hold = 0.05
    holder, writer = engine_db(users.SCHEMA), engine_db(users.SCHEMA)
    # Another connection is in the way for ``hold`` seconds: it holds the write lock (SQLite), or has inserted the
    # row the writer inserts and not committed (PostgreSQL: the writer waits for it, then runs again).
    assert holder.try_begin() is None
    if holder.engine == "postgresql":
        insert(holder, "a@x")

    async def let_go() -> None:
        await asyncio.sleep(hold)
        holder.execute("ROLLBACK")

    releasing = asyncio.create_task(let_go())  # made before the clock is set: the holder's statement is not counted
    clock = DatabaseClock()
    token = DATABASE_TIME.set(clock)
    try:
        started = time.perf_counter()
        async for uow in transactions(writer):
            with uow:
                insert(writer, "a@x")
                uow.commit()
        waited = time.perf_counter() - started
        await releasing
    finally:
        DATABASE_TIME.reset(token)

    assert waited >= hold * 0.9
    assert clock.seconds >= waited * 0.9

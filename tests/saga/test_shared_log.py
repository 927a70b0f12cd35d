"""Several coordinators over one saga log: replicas of orders (real processes) and relays sharing one outbox.

An order belongs to the coordinator driving it while its lease lasts; a replica that starts takes over only what a
previous life of itself left or what nobody holds any more. Every outbox row is handed over by one relay.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.system.audit import audit
from bench.system.deploy import Deployment, deploy
from bench.system.faults import admin_faults
from plumbing.outbox import OutboxRelay
from shop.db import UnitOfWork, connect, create_schema
from shop.inventory import Line, PricedLine
from shop.orders import SCHEMA, Orders, OutboxItem, Owner, add_lease_columns
from shop.seed import SeedSpec
from tests.pgfixtures import new_database, read_rows

SMALL = SeedSpec(products=20, users=10)
TOKEN = "admin-token-for-tests"


def served(deployment: Deployment, process: str, endpoint: str) -> int:
    """Requests ``process`` answered on ``endpoint``, from its own /metrics."""
    port = deployment.config.process(process).control_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = rf'http_request_duration_seconds_count\{{[^}}]*endpoint="{re.escape(endpoint)}"[^}}]*\}} ([0-9.e+]+)'
    return int(sum(float(n) for n in re.findall(pattern, text)))


def statuses(db: Path) -> list[tuple[int, str, str | None]]:
    rows = read_rows(db, "SELECT id, status, reason FROM orders ORDER BY id")
    return [(int(str(i)), str(s), None if r is None else str(r)) for i, s, r in rows]


@pytest.mark.sockets
async def test_a_restarting_replica_leaves_its_siblings_checkouts_alone(tmp_path: Path) -> None:
    with deploy(
        "microservices", tmp_path / "run", seed=SMALL, replicas={"orders": 2}, admin_token=TOKEN, call_timeout=2.0
    ) as deployment:
        headers = dict(deployment.auth_headers)
        async with httpx.AsyncClient(base_url=deployment.public_url, headers=headers, timeout=15) as client:
            users = []
            for n in range(4):
                reply = await client.post("/users", json={"email": f"r{n}@test.example", "name": f"R {n}"})
                assert reply.status_code == 201, reply.text
                users.append(int(reply.json()["id"]))
                funded = await client.post(f"/users/{users[-1]}/deposits", json={"amount_cents": 100_000})
                assert funded.status_code == 201, funded.text

            payments = deployment.admin_url("payments")
            admin_faults(payments, TOKEN, "POST", {"component": "payments", "kind": "latency", "value": 1.5})
            deployment.supervisor.stop("orders-1")

            async def checkout(n: int) -> httpx.Response:
                body = {"user_id": users[n], "items": [{"product_id": n + 1, "quantity": 1}]}
                return await client.post("/orders", json=body, headers={"Idempotency-Key": f"replica-{n}"})

            sent = [asyncio.create_task(checkout(n)) for n in range(4)]
            await asyncio.sleep(0.2)
            await asyncio.to_thread(deployment.supervisor.restart, "orders-1")
            replies = await asyncio.gather(*sent)
            admin_faults(payments, TOKEN, "DELETE")

            assert [r.status_code for r in replies] == [201] * 4, [r.text for r in replies]
            assert [r.json()["status"] for r in replies] == ["CONFIRMED"] * 4
            for reply in replies:
                order = await client.get(f"/orders/{reply.json()['id']}")
                assert order.json()["status"] == "CONFIRMED"

        assert [s for _, s, _ in statuses(deployment.run_dir / "orders.db")] == ["CONFIRMED"] * 4
        deadline = time.monotonic() + 30
        report = audit(deployment.run_dir, "microservices")
        while not report.ok and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            report = audit(deployment.run_dir, "microservices")
        assert report.ok, report.summary()
        # Each confirmed order's notification was handed to notifications once, by one of the two relays.
        assert served(deployment, "notifications", "POST /notifications") == 4


# --- the log's ownership, on one database shared by two coordinators ------------------------------------------------


@pytest.fixture
def shared(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """Two connections to one orders database (a SQLite file, or a PostgreSQL database on the session's server)."""
    if engine == "postgresql":
        url, password = new_database(request.getfixturevalue("pg_server"), "orders_")
        first, second = connect(url, password=password), connect(url, password=password)
    else:
        first, second = connect(tmp_path / "orders.db"), connect(tmp_path / "orders.db")
    create_schema(first, SCHEMA)
    add_lease_columns(first)
    yield first, second
    first.close()
    second.close()


def place(conn: sqlite3.Connection, key: str, owner: Owner | None, lease_until: float) -> int:
    with UnitOfWork(conn) as uow:
        order_id = Orders(conn).create(1, key, f"1:{key}", [Line(1, 1)], owner.id if owner else None, lease_until)
        uow.commit()
    return order_id


def test_only_orders_without_a_live_owner_can_be_claimed(shared: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    conn, _ = shared
    now = time.time()
    sibling, me, my_past = Owner.new("host/orders-2"), Owner.new("host/orders-1"), Owner.new("host/orders-1")
    driven = place(conn, "driven", sibling, now + 60)
    expired = place(conn, "expired", sibling, now - 1)
    orphan = place(conn, "orphan", None, 0.0)
    mine_before = place(conn, "before", my_past, now + 60)

    assert Orders(conn).claimable(me, now) == [expired, orphan, mine_before]
    assert Orders(conn).claimable(sibling, now) == [expired, orphan]  # its own live order is in its hands already
    assert not Orders(conn).claim(driven, me, now, now + 10)
    assert Orders(conn).claim(expired, me, now, now + 10)
    assert not Orders(conn).claim(expired, sibling, now, now + 10)  # mine now, with a live lease
    assert Orders(conn).claimable(sibling, now) == [orphan]


def test_a_renewed_lease_keeps_the_order_and_a_released_one_frees_it(
    shared: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    conn, _ = shared
    now = time.time()
    owner, other = Owner.new("a/orders-1"), Owner.new("a/orders-2")
    order_id = place(conn, "k", owner, now + 1)
    assert Orders(conn).renew(owner, [order_id], now + 100) == 1
    assert Orders(conn).renew(other, [order_id], now + 1000) == 0  # only the owner renews
    assert Orders(conn).claimable(other, now + 50) == []
    Orders(conn).release(order_id, owner)
    assert Orders(conn).claimable(other, now) == [order_id]


async def test_two_relays_on_one_outbox_hand_each_row_over_once(
    shared: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    first, second = shared
    order_ids = [place(first, f"k{n}", None, 0.0) for n in range(40)]
    with UnitOfWork(first) as uow:
        for order_id in order_ids:
            Orders(first).confirm(order_id, 1, [PricedLine(1, 1, 100)])
        uow.commit()
    handed: list[int] = []

    async def deliver(item: OutboxItem) -> None:
        await asyncio.sleep(0.001)
        handed.append(item.order_id)

    relays = [
        OutboxRelay(conn, deliver, owner=Owner.new(f"h/w{n}"), lease=10.0, batch=8)
        for n, conn in enumerate((first, second))
    ]
    while len(handed) < len(order_ids):
        await asyncio.gather(*(relay.drain_once() for relay in relays))
    assert sorted(handed) == order_ids
    assert all(relay.delivered > 0 for relay in relays)  # both took part
    assert Orders(first).undelivered() == []


async def test_a_relay_gives_back_what_it_cannot_hand_over_before_its_claim_is_half_spent(
    shared: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    conn, other_conn = shared
    order_ids = [place(conn, f"k{n}", None, 0.0) for n in range(3)]
    with UnitOfWork(conn) as uow:
        for order_id in order_ids:
            Orders(conn).confirm(order_id, 1, [PricedLine(1, 1, 100)])
        uow.commit()

    async def slow(item: OutboxItem) -> None:
        await asyncio.sleep(0.3)

    relay = OutboxRelay(conn, slow, owner=Owner.new("h/slow"), lease=0.4, batch=8)
    assert await relay.drain_once() == 2  # one handed over, then the claim was half spent: two given back
    assert relay.delivered == 1
    taken = Orders(other_conn).claim_undelivered(Owner.new("h/other"), time.time(), time.time() + 5, 8)
    assert [item.order_id for item in taken] == order_ids[1:]

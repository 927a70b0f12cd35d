"""Keyed deposits under faults and across versions, over real processes of every topology.

A deposit whose reply is lost (the gateway gives up on payments, or the resilient profile retries it) credits once
under its key, and the client's own retry gets the answer; databases written by the previous version (keys unique
across users, deposits without keys) open, keep their data, and take per-user keys.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.system.audit import database_paths
from bench.system.faults import FaultPlan, Injector
from tests.pgfixtures import read_rows
from tests.shopfixtures import Shop, fresh_deployment, settled

pytestmark = pytest.mark.sockets

TOKEN = "test-admin-token"


def credits(shop: Shop, user_id: int, key: str) -> int:
    db = database_paths(shop.run_dir, shop.topology)["payments"]
    ((n,),) = read_rows(db, "SELECT COUNT(*) FROM deposits WHERE user_id = ? AND idempotency_key = ?", user_id, key)
    return int(str(n))


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
async def test_a_deposit_that_timed_out_is_retried_safely_with_its_key(topology: str, tmp_path: Path) -> None:
    # Resilient profile: each attempt to payments times out after 0.5 s, and the keyed deposit is retried (3 attempts)
    # before the gateway answers 503; some attempts may still run on the other side. The client retries with its key.
    async with fresh_deployment(topology, tmp_path, profile="resilient", admin_token=TOKEN) as shop:
        assert shop.deployment is not None
        user = await shop.new_user(1000)
        plan = FaultPlan("latency", "payments", 0.6)
        body = {"amount_cents": 250}
        headers = {"Idempotency-Key": "lost-reply"}
        Injector(shop.deployment).begin(plan)
        try:
            lost = await shop.client.post(f"/users/{user}/deposits", json=body, headers=headers)
        finally:
            Injector(shop.deployment).end(plan)
        assert lost.status_code == 503, lost.text
        assert lost.headers["retry-after"] == "1"

        retried = await shop.client.post(f"/users/{user}/deposits", json=body, headers=headers)
        again = await shop.client.post(f"/users/{user}/deposits", json=body, headers=headers)

        assert retried.status_code == again.status_code == 201, (retried.text, again.text)
        assert retried.json() == again.json() == {"user_id": user, "balance_cents": 1250}
        assert (await shop.client.get(f"/users/{user}")).json()["balance_cents"] == 1250
        assert credits(shop, user, "lost-reply") == 1
        await settled(shop)


# The schema of the previous version, made from a database of this one: orders whose keys are unique across users,
# and deposits without keys (the rows are kept).
DOWNGRADE_ORDERS = """
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE orders_old (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
    step TEXT NOT NULL DEFAULT 'started',
    total_cents INTEGER,
    reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
INSERT INTO orders_old SELECT id, user_id, idempotency_key, fingerprint, status, step, total_cents, reason,
    created_at, updated_at, owner, lease_until FROM orders;
DROP TABLE orders;
ALTER TABLE orders_old RENAME TO orders;
CREATE INDEX orders_pending ON orders (status) WHERE status = 'PENDING';
COMMIT;
"""
DOWNGRADE_PAYMENTS = """
BEGIN;
CREATE TABLE deposits_old (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0)
);
INSERT INTO deposits_old SELECT id, user_id, amount_cents FROM deposits;
DROP TABLE deposits;
ALTER TABLE deposits_old RENAME TO deposits;
COMMIT;
"""


def downgrade(run_dir: Path, topology: str) -> None:
    paths = database_paths(run_dir, topology)
    for context, script in (("orders", DOWNGRADE_ORDERS), ("payments", DOWNGRADE_PAYMENTS)):
        conn = sqlite3.connect(paths[context], isolation_level=None)
        try:
            conn.executescript(script)
        finally:
            conn.close()


@pytest.mark.parametrize("topology", ["monolith", "colocated", "microservices"])
async def test_databases_of_the_previous_version_open_and_take_keys_per_user(
    topology: str, tmp_path: Path, engine: str
) -> None:
    if engine != "sqlite":
        pytest.skip("the previous version's databases are SQLite files: no PostgreSQL database predates this version")
    async with fresh_deployment(topology, tmp_path) as shop:
        ann, bob = await shop.new_user(1_000_000), await shop.new_user(1_000_000)
        anns = await shop.checkout(ann, [(4, 1)], key="old-key")
        assert anns.status_code == 201, anns.text
        run_dir = shop.run_dir
    downgrade(run_dir, topology)

    async with fresh_deployment(topology, tmp_path) as shop:
        assert shop.run_dir == run_dir
        # What the old version wrote is there and replays; the key is now ann's only.
        assert (await shop.checkout(ann, [(4, 1)], key="old-key")).json() == anns.json()
        bobs = await shop.checkout(bob, [(4, 1)], key="old-key")
        assert bobs.status_code == 201, bobs.text
        assert bobs.json()["id"] != anns.json()["id"]
        assert (await shop.client.get(f"/users/{ann}")).json()["balance_cents"] == 1_000_000 - anns.json()[
            "total_cents"
        ]
        for _ in range(2):
            reply = await shop.client.post(
                f"/users/{bob}/deposits", json={"amount_cents": 5}, headers={"Idempotency-Key": "old-db"}
            )
            assert reply.json() == {"user_id": bob, "balance_cents": 1_000_000 - bobs.json()["total_cents"] + 5}
        await settled(shop)

"""A writer in the way, held elsewhere on a database: reads keep answering in milliseconds, and a write ends as a
retryable 503 (with Retry-After) within the configured bound, then succeeds once the holder lets go. Every topology.

On SQLite the holder takes the database's write lock; on PostgreSQL there is none, and the holder keeps a
SERIALIZABLE transaction open with the row lock of the wallet the deposit writes: each attempt of the deposit waits
for it inside the server (at most the session's lock_timeout, on the event loop's thread), runs again after a backoff
awaited on the loop, and gives up after lock_wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.system.postgres import DATABASES_FILE, admin_connect
from shop.connection import LOCK_WAIT
from shop.postgres import LOCK_TIMEOUT_MS
from tests.contract.test_public_api import assert_error
from tests.shopfixtures import Shop

pytestmark = pytest.mark.sockets

# Generous for a shared 2-core machine; the defect took 9.5 s for a read and 10 s for the write.
FAST = 0.5


@contextmanager
def wallet_write_held(run_dir: Path, component: str, user_id: int) -> Iterator[None]:
    """Another connection is in the way of writes to ``user_id``'s wallet in ``component``'s database until the block
    ends: BEGIN IMMEDIATE on its SQLite file; on PostgreSQL an open SERIALIZABLE transaction that updated the wallet's
    row (and holds its lock)."""
    if (run_dir / DATABASES_FILE).exists():
        with admin_connect(run_dir, component) as conn:
            conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            conn.execute("UPDATE wallets SET balance_cents = balance_cents WHERE user_id = %s", (user_id,))
            yield
            conn.execute("ROLLBACK")
        return
    other = sqlite3.connect(run_dir / f"{component}.db", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def wallet_database(shop: Shop) -> str:
    return "monolith" if shop.topology == "monolith" else "payments"


async def test_a_writer_held_elsewhere_blocks_neither_reads_nor_the_process(shop: Shop) -> None:
    user_id = await shop.new_user(balance_cents=500)
    with wallet_write_held(shop.run_dir, wallet_database(shop), user_id):
        for path in ("/products/1", f"/users/{user_id}"):
            started = time.perf_counter()
            reply = await shop.client.get(path)
            assert reply.status_code == 200, reply.text
            assert time.perf_counter() - started < FAST, path

        started = time.perf_counter()
        deposit = asyncio.create_task(shop.client.post(f"/users/{user_id}/deposits", json={"amount_cents": 100}))
        await asyncio.sleep(0.2)  # the deposit is now waiting for the lock, or running again
        meanwhile = time.perf_counter()
        slowest = 0.0
        while not deposit.done():  # reads of the same process answer all along
            read = time.perf_counter()
            assert (await shop.client.get(f"/users/{user_id}")).status_code == 200
            slowest = max(slowest, time.perf_counter() - read)
            await asyncio.sleep(0.01)  # an in-process read may never yield to the loop: let the deposit run
        assert time.perf_counter() - meanwhile >= 0.5
        # On PostgreSQL the deposit freezes its process's loop for at most the lock_timeout at a time.
        postgres = (shop.run_dir / DATABASES_FILE).exists()
        assert slowest < (LOCK_TIMEOUT_MS / 1000 + 0.25 if postgres else FAST), slowest
        reply = await deposit
        waited = time.perf_counter() - started
        assert_error(reply, 503, "dependency_unavailable")
        assert reply.headers["retry-after"] == "1"
        assert LOCK_WAIT * 0.9 <= waited < LOCK_WAIT + 1.5, waited

    reply = await shop.client.post(f"/users/{user_id}/deposits", json={"amount_cents": 100})
    assert reply.status_code == 201, reply.text
    assert reply.json()["balance_cents"] == 600

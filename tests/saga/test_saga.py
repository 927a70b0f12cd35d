"""The saga and consistency: refusals compensate, crashes in the middle end confirmed or compensated, never oversold.

Every test ends with the audit (bench/audit.py), which reads every database directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from shop.seed import SeedSpec
from tests.pgfixtures import read_rows
from tests.shopfixtures import TEST_SEED, Shop, fresh_deployment, inprocess_shop, settled

pytestmark = pytest.mark.sockets

FAST = 0.5  # call timeout of the saga's calls in these tests: recovery picks up stuck orders after 4x this + 1 s


def query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    return read_rows(db, sql, *args)


@pytest.mark.parametrize("where", ["colocated-inprocess", "microservices-sockets"])
async def test_payment_refused_releases_stock_and_rejects_the_order(where: str, tmp_path: Path) -> None:
    async def scenario(shop: Shop) -> None:
        user = await shop.new_user(100)
        before = (await shop.client.get("/products/3")).json()["stock"]
        reply = await shop.checkout(user, [(3, 2)])
        assert reply.status_code == 402
        assert (await shop.client.get("/products/3")).json()["stock"] == before
        rejected = query(shop.run_dir / "orders.db", "SELECT id, status, reason FROM orders WHERE user_id = ?", user)
        assert [(status, reason) for _, status, reason in rejected] == [("REJECTED", "insufficient_funds")]
        order_id = rejected[0][0]
        assert query(shop.run_dir / "inventory.db", "SELECT status FROM reservations WHERE order_id = ?", order_id) == [
            ("RELEASED",)
        ]
        assert query(shop.run_dir / "payments.db", "SELECT status FROM charges WHERE order_id = ?", order_id) == [
            ("VOID",)
        ]
        assert (await shop.client.get(f"/users/{user}")).json()["balance_cents"] == 100
        await settled(shop)

    if where == "colocated-inprocess":
        async with inprocess_shop("colocated") as shop:
            await scenario(shop)
    else:
        async with fresh_deployment("microservices", tmp_path) as shop:
            await scenario(shop)


@pytest.mark.parametrize("topology", ["monolith", "colocated", "microservices"])
async def test_fifty_concurrent_checkouts_of_ten_units_sell_exactly_ten(topology: str, tmp_path: Path) -> None:
    seed = SeedSpec(seed=3, products=5, users=50, stock=10)
    async with fresh_deployment(topology, tmp_path, seed) as shop:
        replies = await asyncio.gather(*(shop.checkout(user, [(2, 1)]) for user in range(1, 51)))
        statuses = Counter(r.status_code for r in replies)
        assert statuses == {201: 10, 409: 40}, statuses
        assert all(r.json()["error"] == "out_of_stock" for r in replies if r.status_code == 409)
        assert (await shop.client.get("/products/2")).json()["stock"] == 0
        await settled(shop)


async def test_killing_payments_mid_checkout_gives_503_or_success_and_no_stock_stays_held(tmp_path: Path) -> None:
    async with fresh_deployment("microservices", tmp_path, call_timeout=FAST) as shop:
        assert shop.deployment is not None
        supervisor = shop.deployment.supervisor

        async def buyer(user: int) -> list[int]:
            statuses = []
            for _ in range(12):
                reply = await shop.checkout(user, [(1 + user % 5, 1)])
                statuses.append(reply.status_code)
                await asyncio.sleep(0.02)
            return statuses

        buyers = asyncio.gather(*(buyer(user) for user in range(1, 6)))
        await asyncio.sleep(0.3)
        supervisor.kill("payments")
        results = await asyncio.wait_for(buyers, timeout=60)  # never a hang
        statuses = Counter(s for result in results for s in result)
        assert set(statuses) <= {201, 503}, statuses
        assert statuses[503] > 0, statuses
        supervisor.restart("payments")
        await settled(shop)
        # After recovery the same shop sells again.
        assert (await shop.checkout(1, [(1, 1)])).status_code == 201


async def test_notifications_down_does_not_fail_checkouts_and_each_arrives_once(tmp_path: Path) -> None:
    async with fresh_deployment("microservices", tmp_path, call_timeout=FAST) as shop:
        assert shop.deployment is not None
        shop.deployment.supervisor.kill("notifications")
        user = await shop.new_user(10_000_000)
        orders = []
        for n in range(5):
            reply = await shop.checkout(user, [(n + 1, 1)])
            assert reply.status_code == 201, reply.text
            orders.append(reply.json()["id"])
        shop.deployment.supervisor.restart("notifications")
        deadline = time.monotonic() + 20
        seen: list[int] = []
        while time.monotonic() < deadline:
            seen = [n["order_id"] for n in (await shop.client.get(f"/users/{user}/notifications")).json()["items"]]
            if len(seen) >= len(orders):
                break
            await asyncio.sleep(0.1)
        assert sorted(seen) == sorted(orders)
        await settled(shop)


async def test_orders_killed_with_pending_orders_are_finished_or_compensated_after_restart(tmp_path: Path) -> None:
    async with fresh_deployment("microservices", tmp_path, call_timeout=FAST) as shop:
        assert shop.deployment is not None
        supervisor = shop.deployment.supervisor
        supervisor.pause("payments")  # charges hang: the orders stay PENDING with a call in flight
        try:
            pending = [
                asyncio.ensure_future(
                    shop.client.post(
                        "/orders",
                        json={"user_id": user, "items": [{"product_id": 4, "quantity": 1}]},
                        headers={"Idempotency-Key": f"crash-{user}"},
                    )
                )
                for user in range(1, 6)
            ]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rows = query(shop.run_dir / "orders.db", "SELECT COUNT(*) FROM orders WHERE status = 'PENDING'")
                if rows[0][0] == 5:
                    break
                await asyncio.sleep(0.01)
            supervisor.kill("orders")
        finally:
            supervisor.resume("payments")
        for reply in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(reply, httpx.Response):
                assert reply.status_code in (201, 503)
        supervisor.restart("orders")
        await settled(shop)
        statuses = query(shop.run_dir / "orders.db", "SELECT status FROM orders WHERE idempotency_key LIKE 'crash-%'")
        assert len(statuses) == 5
        assert {s for (s,) in statuses} <= {"CONFIRMED", "REJECTED"}


async def test_killing_the_monolith_mid_checkout_leaves_it_consistent(tmp_path: Path) -> None:
    async with fresh_deployment("monolith", tmp_path) as shop:
        assert shop.deployment is not None

        async def buyer(user: int) -> None:
            for _ in range(20):
                try:
                    await shop.checkout(user, [(2, 1)])
                except httpx.TransportError:
                    return

        buyers = asyncio.gather(*(buyer(user) for user in range(1, 6)))
        await asyncio.sleep(0.2)
        shop.deployment.supervisor.kill("monolith")
        await asyncio.wait_for(buyers, timeout=30)
        shop.deployment.supervisor.restart("monolith")
        await settled(shop)
        assert TEST_SEED.products == (await shop.client.get("/products")).json()["total"]

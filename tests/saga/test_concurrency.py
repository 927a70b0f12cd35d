"""Concurrency across processes, on both engines: replicas sharing their databases never oversell the last units,
turn one Idempotency-Key sent at once into one order and one charge, and hand each notification over once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bench.system.deploy import deploy
from shop.seed import SeedSpec
from tests.shopfixtures import Shop, settled, socket_shop

pytestmark = pytest.mark.sockets

LAST_UNITS = 3
SEED = SeedSpec(seed=3, products=4, users=24, stock=LAST_UNITS)
REPLICAS = {"monolith": {"monolith": 2}, "microservices": {"orders": 2, "inventory": 2, "payments": 2}}


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
async def test_replicas_never_oversell_and_key_one_order(topology: str, tmp_path: Path) -> None:
    with deploy(topology, tmp_path / "run", seed=SEED, replicas=REPLICAS[topology], call_timeout=5.0) as deployment:
        async with socket_shop(deployment, SEED) as shop:
            shop.client.timeout = httpx.Timeout(30)
            # Every seeded user at once wants one of the last units of product 1.
            replies = await asyncio.gather(*(shop.checkout(user, [(1, 1)]) for user in range(1, SEED.users + 1)))
            codes = [reply.status_code for reply in replies]
            sold = codes.count(201)
            assert set(codes) <= {201, 409, 503}, codes
            assert 1 <= sold <= LAST_UNITS, codes
            assert [r.json()["error"] for r in replies if r.status_code == 409] == ["out_of_stock"] * codes.count(409)
            assert (await shop.client.get("/products/1")).json()["stock"] == LAST_UNITS - sold

            await same_key_at_once(shop)
            await settled(shop)  # the audit: stock conserved, one charge per order, one notification per order


async def same_key_at_once(shop: Shop) -> None:
    user = await shop.new_user(10_000_000)
    replies = await asyncio.gather(*(shop.checkout(user, [(2, 1)], key="at-once") for _ in range(8)))
    codes = [reply.status_code for reply in replies]
    assert set(codes) <= {201, 409, 503}, codes
    conflicts = {r.json()["error"] for r in replies if r.status_code == 409}
    assert conflicts <= {"order_in_progress"}, conflicts
    deadline = asyncio.get_running_loop().time() + 20
    while True:  # the key's one order, once no longer in progress
        reply = await shop.checkout(user, [(2, 1)], key="at-once")
        if reply.status_code == 201 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert reply.status_code == 201, reply.text
    order = reply.json()
    assert {r.json()["id"] for r in replies if r.status_code == 201} <= {order["id"]}
    balance = (await shop.client.get(f"/users/{user}")).json()["balance_cents"]
    assert balance == 10_000_000 - order["total_cents"]  # one charge

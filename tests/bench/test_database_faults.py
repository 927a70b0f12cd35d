"""Database faults on PostgreSQL, one server per service's database: killing or pausing the monolith's one database
takes the whole shop with it; killing or pausing payments' database leaves browsing alone. Both recover, consistent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bench.system import postgres
from bench.system.deploy import deploy
from bench.system.faults import FaultPlan, Injector
from shop.seed import SeedSpec
from tests.shopfixtures import settled, socket_shop

pytestmark = [
    pytest.mark.sockets,
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres.available(), reason=f"no PostgreSQL server binaries: {postgres.INSTALL_HINT}"),
]

SEED = SeedSpec(seed=5, products=20, users=10)


async def browse(client: httpx.AsyncClient) -> int | str:
    try:
        return (await client.get("/products/1", timeout=1.5)).status_code
    except httpx.TimeoutException:
        return "timeout"


@pytest.mark.parametrize("kind", ["db-kill", "db-pause"])
@pytest.mark.parametrize("topology", ["monolith", "microservices"])
async def test_blast_radius_of_a_database_server(topology: str, kind: str, tmp_path: Path) -> None:
    db = "postgres" if topology == "monolith" else "postgres-per-service"
    with deploy(topology, tmp_path / "run", seed=SEED, db=db, call_timeout=0.5) as deployment:
        injector = Injector(deployment)
        plan = FaultPlan(kind, "payments")
        assert injector.unsupported(plan) is None
        assert plan in injector.database_faults()
        async with socket_shop(deployment, SEED) as shop:
            assert await browse(shop.client) == 200
            injector.begin(plan)
            try:
                await asyncio.sleep(0.2)
                during = await browse(shop.client)
                order = {"user_id": 1, "items": [{"product_id": 2, "quantity": 1}]}
                attempt = shop.client.post("/orders", json=order, headers={"Idempotency-Key": kind}, timeout=3)
                checkout = await asyncio.wait_for(asyncio.gather(attempt, return_exceptions=True), timeout=10)
            finally:
                await asyncio.to_thread(injector.end, plan)
            if topology == "monolith":
                assert during in (503, "timeout")  # its one database: everything goes with it
            else:
                assert during == 200  # payments' database: browsing never touches it
            reply = checkout[0]
            assert isinstance(reply, httpx.TimeoutException) or reply.status_code == 503, reply

            deadline = asyncio.get_running_loop().time() + 20
            while True:  # recovered: checkouts go through again
                after = await shop.checkout(1, [(2, 1)])
                if after.status_code == 201 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert after.status_code == 201, after.text
            await settled(shop)


def test_database_faults_need_a_server_per_service(tmp_path: Path) -> None:
    with deploy("microservices", tmp_path / "run", seed=SEED, db="postgres") as deployment:
        injector = Injector(deployment)
        assert injector.database_faults() == ()
        assert "one per service" in (injector.unsupported(FaultPlan("db-kill", "payments")) or "")

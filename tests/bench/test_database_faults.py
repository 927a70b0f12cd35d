"""Database faults on PostgreSQL, one server per service's database: killing or pausing the monolith's one database
takes the whole shop with it; killing or pausing payments' database leaves browsing alone. Both recover, consistent.

And a database server SIGKILLed in the middle of a storm of concurrent checkouts and keyed deposits, then brought back:
once the shop has settled, the ledger recomputed from every database is clean. Nothing oversold, no order confirmed
without its charge, no accepted order lost, no deposit credited twice, every saga ended."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from bench.system import postgres
from bench.system.audit import audit, database_paths
from bench.system.deploy import deploy
from bench.system.faults import FaultPlan, Injector
from shop.seed import SeedSpec
from tests.pgfixtures import read_rows
from tests.shopfixtures import DEFINITIVE, Acknowledged, Shop, settled, socket_shop, writer

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
            assert isinstance(reply, httpx.TimeoutException) or getattr(reply, "status_code", None) == 503, reply

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


# --- A database killed in a storm of checkouts ----------------------------------------------------------------------

# Little stock on few products, so that the storm sells out while the server dies and comes back: an oversell would
# show. Users are funded for every checkout they can make.
STORM_SEED = SeedSpec(seed=9, products=4, users=8, stock=20)
WRITERS = 8


def _ids(rows: list[tuple[object, ...]]) -> set[int]:
    return {int(str(row[0])) for row in rows}


def _failed(outcomes: Counter[str]) -> int:
    return sum(n for outcome, n in outcomes.items() if outcome.split()[1] not in map(str, DEFINITIVE))


async def storm(shop: Shop, injector: Injector, plan: FaultPlan, acked: Acknowledged) -> tuple[Counter[str], ...]:
    """Writers until the end; the server SIGKILLed 0.8 s in, restarted 0.5 s later (ready again), 1.5 s more of
    writes. Returns the outcomes before the kill, while it was down or restarting, and after."""
    stop = asyncio.Event()
    writers = [asyncio.ensure_future(writer(shop, i, stop, acked, STORM_SEED.products)) for i in range(WRITERS)]
    try:
        await asyncio.sleep(0.8)
        before = acked.outcomes.copy()
        injector.begin(plan)  # every process of the server at once
        await asyncio.sleep(0.5)
        await asyncio.to_thread(injector.end, plan)
        down = acked.outcomes - before
        restarted = acked.outcomes.copy()
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), timeout=15)
    return before, down, acked.outcomes - restarted


@pytest.mark.parametrize(
    ("topology", "target"),
    [("monolith", "payments"), ("microservices", "payments"), ("microservices", "orders")],
    ids=["monolith", "microservices-payments", "microservices-orders"],  # the monolith's one database holds all
)
async def test_a_database_killed_in_a_storm_of_checkouts_leaves_a_clean_ledger(
    topology: str, target: str, tmp_path: Path
) -> None:
    db = "postgres" if topology == "monolith" else "postgres-per-service"
    with deploy(topology, tmp_path / "run", seed=STORM_SEED, db=db, call_timeout=0.5) as deployment:
        injector = Injector(deployment)
        plan = FaultPlan("db-kill", target)
        assert injector.unsupported(plan) is None
        server = injector.database_process(target)
        assert server is not None
        postmaster = deployment.supervisor.pid(server)
        acked = Acknowledged()
        async with socket_shop(deployment, STORM_SEED) as shop:
            before, down, after = await storm(shop, injector, plan, acked)
            assert deployment.supervisor.pid(server) != postmaster, "the server was not restarted"
            assert before["checkout 201"] > 0, before  # the storm was under way when the server died
            assert _failed(down) > 0, down  # the kill hit requests in flight
            assert after["checkout 201"] + after["deposit 201"] > 0, after  # and the shop came back
            await settled(shop, timeout=20)  # nothing PENDING, and every invariant of the audit holds

        report = audit(deployment.run_dir, topology)
        assert report.ok, report.summary()
        paths = database_paths(deployment.run_dir, topology)
        confirmed = _ids(read_rows(paths["orders"], "SELECT id FROM orders WHERE status = 'CONFIRMED'"))
        assert acked.orders <= confirmed, sorted(acked.orders - confirmed)  # no accepted order lost
        assert report.counts["orders_pending"] == 0  # every saga ended

        # Nothing oversold: what the orders service confirmed per product is what left the inventory, and no more
        # than there was.
        lines = read_rows(
            paths["orders"],
            "SELECT l.product_id, SUM(l.quantity) FROM order_lines l JOIN orders o ON o.id = l.order_id "
            "WHERE o.status = 'CONFIRMED' GROUP BY l.product_id",
        )
        sold = {int(str(product)): int(str(quantity)) for product, quantity in lines}
        products = read_rows(paths["inventory"], "SELECT id, initial_stock, stock FROM products")
        left = {int(str(product)): (int(str(initial)), int(str(stock))) for product, initial, stock in products}
        for product, (initial, stock) in left.items():
            assert 0 <= stock <= initial, product
            assert sold.get(product, 0) == initial - stock, product
        assert 0 in {stock for _, stock in left.values()}, left  # sold out: there was a last unit to fight for

        # Each acknowledged deposit credited exactly once, under its key (the audit checks the wallets add up).
        keyed = read_rows(
            paths["payments"],
            "SELECT user_id, idempotency_key, COUNT(*) FROM deposits WHERE idempotency_key IS NOT NULL "
            "GROUP BY user_id, idempotency_key",
        )
        credited = {(int(str(user)), str(key)): int(str(n)) for user, key, n in keyed}
        assert {key: credited.get(key, 0) for key in acked.deposits} == dict.fromkeys(acked.deposits, 1)
        assert set(credited.values()) <= {1}

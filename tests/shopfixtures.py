"""Fixtures that give a test the shop's public API, in-process or over real processes, for every topology.

One contract suite runs against all of them by swapping the fixture (STYLE 11): the same test bodies, five deployments.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.system.audit import audit
from bench.system.deploy import Deployment, deploy
from plumbing.host import ProcessApp
from plumbing.topology import PUBLIC, layout, make_config
from shop.seed import SeedSpec
from tests.pgfixtures import current_engine, inprocess_databases

TEST_SEED = SeedSpec(seed=7, products=60, users=20, stock=100_000)
# (topology, mode): in-process runs the process app in the test's event loop; sockets runs real uvicorn processes.
VARIANTS = [
    ("monolith", "inprocess"),
    ("colocated", "inprocess"),
    ("monolith", "sockets"),
    ("colocated", "sockets"),
    ("microservices", "sockets"),
]
# The same contract on PostgreSQL: each topology once (a deployment over sockets costs a server of its own).
PG_VARIANTS = [("monolith", "inprocess"), ("colocated", "inprocess"), ("microservices", "sockets")]
_serial = itertools.count(1)


@dataclass
class Shop:
    """The public API of one deployed topology, with small helpers for tests."""

    topology: str
    mode: str
    client: httpx.AsyncClient
    seed: SeedSpec
    run_dir: Path
    deployment: Deployment | None = None

    async def new_user(self, balance_cents: int = 0) -> int:
        n = next(_serial)
        reply = await self.client.post("/users", json={"email": f"t{n}-{id(self)}@test.example", "name": f"T {n}"})
        assert reply.status_code == 201, reply.text
        user_id = int(reply.json()["id"])
        if balance_cents:
            funded = await self.client.post(f"/users/{user_id}/deposits", json={"amount_cents": balance_cents})
            assert funded.status_code == 201, funded.text
        return user_id

    async def checkout(self, user_id: int, items: list[tuple[int, int]], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key or f"key-{next(_serial)}-{id(self)}"}
        body: dict[str, Any] = {"user_id": user_id, "items": [{"product_id": p, "quantity": q} for p, q in items]}
        return await self.client.post("/orders", json=body, headers=headers)


@asynccontextmanager
async def inprocess_shop(topology: str, seed: SeedSpec = TEST_SEED) -> AsyncIterator[Shop]:
    """The topology's public process running inside this event loop, called through an ASGI transport (no socket).

    Its databases are SQLite files, or fresh PostgreSQL databases when the test runs on that engine."""
    with tempfile.TemporaryDirectory(prefix=f"archbench-{topology}-") as tmp:
        ports = {name: 1 for name, _ in layout(topology)}  # no socket is opened in-process; peers are all local
        databases = inprocess_databases(topology, Path(tmp)) if current_engine() == "postgresql" else None
        config = make_config(topology, Path(tmp), ports, seed, "aiohttp", databases=databases)
        app = ProcessApp(config, config.process_of(PUBLIC[topology]))
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app.front)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop.test", timeout=10) as client:
                yield Shop(topology, "inprocess", client, seed, Path(tmp))
        finally:
            await app.shutdown()


@asynccontextmanager
async def socket_shop(deployment: Deployment, seed: SeedSpec = TEST_SEED) -> AsyncIterator[Shop]:
    headers = dict(deployment.auth_headers)
    async with httpx.AsyncClient(base_url=deployment.public_url, timeout=10, headers=headers) as client:
        yield Shop(deployment.config.topology, "sockets", client, seed, deployment.run_dir, deployment)


class Deployments:
    """Real deployments started once per test session and shared by the tests that only read or add data."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.stack = ExitStack()
        self.running: dict[tuple[str, SeedSpec, str], Deployment] = {}

    def get(self, topology: str, seed: SeedSpec = TEST_SEED) -> Deployment:
        engine = current_engine()
        key = (topology, seed, engine)
        if key not in self.running:
            run_dir = self.base / f"{topology}-{len(self.running)}"
            db = "postgres" if engine == "postgresql" else "sqlite"
            self.running[key] = self.stack.enter_context(deploy(topology, run_dir, seed=seed, db=db))
        return self.running[key]

    def close(self) -> None:
        self.stack.close()


@asynccontextmanager
async def shop_for(variant: tuple[str, str], deployments: Deployments) -> AsyncIterator[Shop]:
    topology, mode = variant
    if mode == "inprocess":
        async with inprocess_shop(topology) as shop:
            yield shop
    else:
        async with socket_shop(deployments.get(topology)) as shop:
            yield shop


@asynccontextmanager
async def fresh_deployment(
    topology: str,
    base: Path,
    seed: SeedSpec = TEST_SEED,
    call_timeout: float = 2.0,
    admin_token: str | None = None,
    profile: str = "naive",
) -> AsyncIterator[Shop]:
    """A deployment of its own, for tests that break or exhaust something."""
    run_dir = base / f"{topology}-own"
    with deploy(
        topology, run_dir, seed=seed, call_timeout=call_timeout, admin_token=admin_token, profile=profile
    ) as deployment:
        async with socket_shop(deployment, seed) as shop:
            yield shop


def session_deployments(tmp_root: Path) -> Iterator[Deployments]:
    deployments = Deployments(tmp_root)
    try:
        yield deployments
    finally:
        deployments.close()


async def settled(shop: Shop, timeout: float = 30.0) -> None:
    """Wait until the audit of every database finds the shop consistent (nothing PENDING, nothing owed), or fail."""
    deadline = time.monotonic() + timeout
    report = audit(shop.run_dir, shop.topology)
    while not report.ok and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        report = audit(shop.run_dir, shop.topology)
    assert report.ok, report.summary()


# --- Writers that keep writing through crashes -------------------------------------------------------------------

DEFINITIVE = {200, 201, 402, 404, 409, 422}  # an answer; anything else (5xx, no answer) is retried or dropped


@dataclass
class Acknowledged:
    """What the shop answered with success: each of these writes was committed and must survive any crash."""

    orders: set[int] = field(default_factory=set)
    users: set[int] = field(default_factory=set)
    deposits: set[tuple[int, str]] = field(default_factory=set)  # (user, Idempotency-Key) of each credited deposit
    deposit_cents: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


async def writer(shop: Shop, index: int, stop: asyncio.Event, acked: Acknowledged, products: int = 10) -> None:
    """Checkouts (one unit of one of the first ``products``), keyed deposits and registrations in turn until
    ``stop``. A checkout or a deposit that got no answer is retried with the same Idempotency-Key (it may have run),
    a registration is simply dropped."""
    rng = random.Random(index)
    serial = itertools.count()
    retry_checkout: tuple[str, int, int] | None = None  # key, user, product of a checkout that got no answer
    retry_deposit: tuple[str, int] | None = None  # key, user of a deposit that got no answer
    while not stop.is_set():
        n = next(serial)
        op = ("checkout", "deposit", "register")[n % 3]
        try:
            if op == "checkout":
                fresh = (f"crash-{index}-{n}", rng.randint(1, shop.seed.users), rng.randint(1, products))
                key, user, product = retry_checkout or fresh
                reply = await shop.checkout(user, [(product, 1)], key)
                retry_checkout = None if reply.status_code in DEFINITIVE else (key, user, product)
                if reply.status_code in (200, 201):
                    acked.orders.add(int(reply.json()["id"]))
            elif op == "deposit":
                key, user = retry_deposit or (f"deposit-{index}-{n}", rng.randint(1, shop.seed.users))
                body = {"amount_cents": 100}
                reply = await shop.client.post(f"/users/{user}/deposits", json=body, headers={"Idempotency-Key": key})
                retry_deposit = None if reply.status_code in DEFINITIVE else (key, user)
                if reply.status_code == 201:
                    acked.deposits.add((user, key))
                    acked.deposit_cents += 100
            else:
                email = f"w{index}-{n}@crash.example"
                reply = await shop.client.post("/users", json={"email": email, "name": f"W {index} {n}"})
                if reply.status_code == 201:
                    acked.users.add(int(reply.json()["id"]))
            acked.outcomes[f"{op} {reply.status_code}"] += 1
        except httpx.TransportError as exc:
            acked.outcomes[f"{op} {type(exc).__name__}"] += 1
            await asyncio.sleep(0.02)  # the process is down: do not spin

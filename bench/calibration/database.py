"""What running the domain's SQL synchronously on the event loop costs, on SQLite and on PostgreSQL.

Run ``python -m bench.calibration.database [--seconds S] [--json FILE]`` (about a minute by default).

1. In-process: the monolith's checkout (one unit of work) and a product read, called one after the other on one
   connection. A unit of work never yields to the loop while it runs, so its wall time is the time it blocks the loop.
2. Deployed: the monolith (one worker, pinned to the first CPU with its database server) under a closed-loop client
   on the other CPUs, one request in flight and then many: checkouts per second and their latency.

PostgreSQL is archbench's own server (``bench/system/postgres.py``), over TCP on loopback as the services use it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.system.deploy import deploy
from bench.system.postgres import running_server
from monolith.app import SCHEMAS
from monolith.app import seed as seed_monolith
from monolith.checkout import checkout
from shop.connection import Connection
from shop.db import connect, create_schema
from shop.inventory import Inventory, Line
from shop.seed import SeedSpec

SEED = SeedSpec(products=200, users=50, stock=10_000_000)


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


async def timed(call: Callable[[int], Awaitable[object]], seconds: float) -> list[float]:
    samples, deadline = [], time.perf_counter() + seconds
    for n in itertools.count():
        started = time.perf_counter()
        await call(n)
        samples.append(time.perf_counter() - started)
        if started > deadline:
            return samples
    raise AssertionError


def in_process(conn: Connection, seconds: float) -> dict[str, Any]:
    create_schema(conn, *SCHEMAS)
    seed_monolith(conn, SEED)

    async def buy(n: int) -> object:
        return await checkout(conn, 1 + n % SEED.users, [Line(1 + n % SEED.products, 1)], f"calib-{time.time_ns()}")

    async def read(n: int) -> object:
        return Inventory(conn).get(1 + n % SEED.products)

    async def both() -> dict[str, Any]:
        return {
            "checkout": quantiles(await timed(buy, seconds)),
            "product_read": quantiles(await timed(read, seconds)),
        }

    try:
        return asyncio.run(both())
    finally:
        conn.close()


async def closed_loop(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    serial = itertools.count()
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                n = next(serial)
                body = {"user_id": 1 + n % SEED.users, "items": [{"product_id": 1 + n % SEED.products, "quantity": 1}]}
                started = time.perf_counter()
                reply = await client.post("/orders", json=body, headers={"Idempotency-Key": f"load-{n}"})
                if reply.status_code == 201:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"concurrency": concurrency, "per_second": len(latencies) / seconds, "failures": failures} | quantiles(
        latencies
    )


def deployed(db: str, seconds: float, base: Path) -> list[dict[str, Any]]:
    cpus = os.sched_getaffinity(0)
    sut, client = (frozenset({min(cpus)}), cpus - {min(cpus)}) if len(cpus) > 1 else (None, cpus)
    rows = []
    with deploy("monolith", base / f"monolith-{db}", seed=SEED, cpus=sut, db=db) as deployment:
        os.sched_setaffinity(0, client)
        try:
            for concurrency in (1, 16):
                rows.append(
                    asyncio.run(closed_loop(deployment.public_url, dict(deployment.auth_headers), concurrency, seconds))
                )
        finally:
            os.sched_setaffinity(0, cpus)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement (default 8)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"in_process": {}, "deployed": {}}
    with tempfile.TemporaryDirectory(prefix="archbench-calibration-") as tmp:
        base = Path(tmp)
        results["in_process"]["sqlite"] = in_process(connect(base / "monolith.db"), args.seconds)
        with running_server(base / "pg") as server:
            url = server.create_database("calibration", "calibration", "calibration")
            results["in_process"]["postgresql"] = in_process(connect(url, password="calibration"), args.seconds)
        for db in ("sqlite", "postgres"):
            results["deployed"][db] = deployed(db, args.seconds, base)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

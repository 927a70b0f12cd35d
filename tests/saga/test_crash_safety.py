"""Crash safety: SQLite survives SIGKILL at any point, and a SIGKILLed harness leaves no process behind.

Writers (checkouts, deposits, registrations) run concurrently while a process is SIGKILLed at random moments and
restarted, round after round. Right after each kill, the files the dead process left are checked with
``PRAGMA integrity_check`` before anything reopens them; at the end every database file is checked again, every
acknowledged write must still be there (WAL with synchronous=NORMAL loses nothing to a process crash), and the audit
must find the shop consistent once it has settled.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from bench.system.audit import audit, database_paths
from bench.system.supervisor import Supervisor
from tests.bench.test_serve import PROCESSES, SMALL_SHOP, STOP_TIMEOUT, is_gone, launched, processes_of_run
from tests.bench.test_supervisor import port_is_free, read_pids
from tests.shopfixtures import DEFINITIVE, Acknowledged, fresh_deployment, settled, writer

pytestmark = pytest.mark.sockets


@pytest.fixture
def engine() -> str:
    """SQLite's own crash safety (its files after a SIGKILL): this module runs on SQLite only."""
    return "sqlite"


ROUNDS = 8
FAST = 0.5  # call timeout of the saga's calls: stuck orders are recovered quickly after a restart of orders
# The processes killed in turn: the monolith is everything; in the microservices, the ones that write on a checkout,
# a deposit or a registration (the orders service holds the saga log).
TARGETS = {"monolith": ("monolith",), "microservices": ("orders", "payments", "inventory", "users")}
WRITERS = 6


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of ``db``, opened read-only (a crashed WAL is recovered in memory, not rewritten)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def total_deposits(db: Path) -> int:
    ((cents,),) = query(db, "SELECT COALESCE(SUM(amount_cents), 0) FROM deposits")
    return int(str(cents))


def kill_and_restart(supervisor: Supervisor, target: str, dbs: list[Path], delay: float) -> list[str]:
    """After ``delay``, SIGKILL ``target``, check the files it left, restart it; returns the integrity results."""
    time.sleep(delay)
    supervisor.kill(target)
    results = [integrity(db) for db in dbs]
    supervisor.restart(target)
    return results


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
async def test_sqlite_survives_sigkill_during_writes(topology: str, tmp_path: Path) -> None:
    rng = random.Random(f"crash-{topology}")
    async with fresh_deployment(topology, tmp_path, call_timeout=FAST) as shop:
        assert shop.deployment is not None
        supervisor = shop.deployment.supervisor
        paths = database_paths(shop.run_dir, topology)
        acked = Acknowledged()
        deposits_before = total_deposits(paths["payments"])
        stop = asyncio.Event()
        writers = [asyncio.ensure_future(writer(shop, i, stop, acked)) for i in range(WRITERS)]
        try:
            await asyncio.sleep(0.3)
            for round_, target in zip(range(ROUNDS), itertools.cycle(TARGETS[topology]), strict=False):
                dbs = sorted({paths[target]} if target in paths else set(paths.values()))
                # In a thread, so the writers keep writing up to the kill and knock on the door during the restart.
                results = await asyncio.to_thread(kill_and_restart, supervisor, target, dbs, rng.uniform(0.05, 0.5))
                assert results == ["ok"] * len(dbs), f"round {round_}, {target} killed: {results}"
            await asyncio.sleep(0.3)  # writes after the last restart
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*writers), timeout=30)

        assert sum(acked.outcomes[f"checkout {s}"] for s in (200, 201)) > 0, acked.outcomes
        failed = sum(n for outcome, n in acked.outcomes.items() if outcome.split()[1] not in map(str, DEFINITIVE))
        assert failed > 0, acked.outcomes  # the kills did hit requests in flight
        await settled(shop)

    # Every process is stopped now: check the files as they were left, and that nothing acknowledged was lost.
    for db in {*paths.values()}:
        assert integrity(db) == "ok", db
    report = audit(shop.run_dir, topology)
    assert report.ok, report.summary()
    confirmed = {int(str(i)) for (i,) in query(paths["orders"], "SELECT id FROM orders WHERE status = 'CONFIRMED'")}
    assert acked.orders <= confirmed
    users = {int(str(i)) for (i,) in query(paths["users"], "SELECT id FROM users")}
    assert acked.users <= users
    assert total_deposits(paths["payments"]) >= deposits_before + acked.deposit_cents
    keyed = query(paths["payments"], "SELECT user_id, idempotency_key FROM deposits WHERE idempotency_key IS NOT NULL")
    assert acked.deposits <= {(int(str(user)), str(key)) for user, key in keyed}


def test_sigkill_of_archbench_serve_leaves_no_process(tmp_path: Path) -> None:
    """The launcher gets no chance to clean up: its children die by PR_SET_PDEATHSIG, so nothing of the run is left."""
    with launched(tmp_path, "microservices", *SMALL_SHOP) as launch:
        url, run_dir = launch.wait_banner()
        processes = {name: psutil.Process(pid) for name, pid in read_pids(run_dir).items()}
        assert set(processes) == PROCESSES["microservices"]

        launch.proc.send_signal(signal.SIGKILL)
        assert launch.wait_exit(STOP_TIMEOUT) == -signal.SIGKILL

        # The kernel delivers the children's SIGKILL as the launcher dies; give them a moment to go.
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(not is_gone(p) for p in processes.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [name for name, proc in processes.items() if not is_gone(proc)] == []
        assert processes_of_run(launch.config_path()) == []
        assert port_is_free(int(url.rsplit(":", 1)[1]))
        for db in run_dir.glob("*.db"):  # killed at whatever point they were, the files are sound
            assert integrity(db) == "ok", db

"""The audit finds every kind of planted anomaly, in both database layouts, and nothing in a healthy shop."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from bench.system.audit import CHECKS, audit, database_paths
from tests.shopfixtures import inprocess_shop, settled

# Each corruption breaks exactly the invariant it is named after (context whose database is changed, SQL).
CORRUPTIONS: dict[str, tuple[str, str]] = {
    "stock_conserved": ("inventory", "UPDATE products SET stock = stock - 1 WHERE id = 2"),
    "confirmed_order_charged_once": ("payments", "UPDATE charges SET amount_cents = amount_cents + 1"),
    "confirmed_order_stock_committed": ("inventory", "UPDATE reservations SET status = 'HELD'"),
    "no_charge_without_confirmed_order": (
        "payments",
        "INSERT INTO charges (order_id, user_id, amount_cents, status) VALUES (999999, 1, 5, 'CHARGED')",
    ),
    "no_stock_held_by_rejected_order": ("orders", "UPDATE orders SET status = 'REJECTED'"),
    "wallet_balances": ("payments", "UPDATE wallets SET balance_cents = balance_cents + 1 WHERE user_id = 1"),
    # A deposit credited twice under one key (the wallet got both, so only this invariant breaks): the unique index
    # that forbids it has to go first.
    "deposit_credited_once": (
        "payments",
        "DROP INDEX deposits_user_key; "
        "INSERT INTO deposits (user_id, amount_cents, idempotency_key) VALUES (1, 5, 'twice'), (1, 5, 'twice'); "
        "UPDATE wallets SET balance_cents = balance_cents + 10 WHERE user_id = 1",
    ),
    "notification_delivered_once": ("notifications", "DELETE FROM notifications"),
    "no_pending_orders": ("orders", "UPDATE orders SET status = 'PENDING'"),
}


def test_every_invariant_has_a_planted_anomaly() -> None:
    assert set(CORRUPTIONS) == set(CHECKS)


@pytest.mark.parametrize("topology", ["monolith", "colocated"])
async def test_the_audit_finds_each_planted_anomaly(topology: str, tmp_path: Path) -> None:
    async with inprocess_shop(topology) as shop:
        user = await shop.new_user(10_000_000)
        assert (await shop.checkout(user, [(2, 1), (3, 2)])).status_code == 201
        assert (await shop.checkout(user, [(2, 1)])).status_code == 201
        await settled(shop)
        healthy = tmp_path / "healthy"
        shutil.copytree(shop.run_dir, healthy)
    assert audit(healthy, topology).ok
    for invariant, (context, sql) in CORRUPTIONS.items():
        broken = tmp_path / invariant
        shutil.copytree(healthy, broken)
        conn = sqlite3.connect(database_paths(broken, topology)[context])
        with conn:
            conn.executescript(sql)
        conn.close()
        report = audit(broken, topology)
        assert not report.ok
        assert report.anomalies[invariant], f"{invariant} not detected: {report.summary()}"

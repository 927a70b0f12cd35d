"""The consistency audit: reads every database of a run directly and checks the shop's invariants.

It attaches each context's database under the context's name (the monolith's one file under every name), so the same
queries audit every topology; PostgreSQL databases are first copied to SQLite files, so the same queries audit both
engines. Each invariant yields the ids that break it; a settled, correct system yields none.

Invariants:
- stock is conserved: initial = on hand + held + committed, per product;
- every CONFIRMED order has exactly one CHARGED charge of its total, and a COMMITTED reservation;
- no money is kept without a confirmed order: every CHARGED charge belongs to a CONFIRMED order;
- no stock is held by a REJECTED order;
- wallet = deposits - active charges, per user (refunds settled);
- a deposit's idempotency key credits once: one deposit per (user, key);
- every CONFIRMED order's notification is delivered exactly once;
- settled: no order is still PENDING.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.system.postgres import DATABASES_FILE, admin_connect
from plumbing.topology import SERVICES

CONTEXTS = SERVICES  # users, inventory, payments, notifications, orders

CHECKS: dict[str, str] = {
    "stock_conserved": """
        SELECT p.id FROM inventory.products p
        LEFT JOIN (
            SELECT l.product_id, SUM(l.quantity) AS q FROM inventory.reservation_lines l
            JOIN inventory.reservations r ON r.order_id = l.order_id AND r.status IN ('HELD', 'COMMITTED')
            GROUP BY l.product_id
        ) t ON t.product_id = p.id
        WHERE p.initial_stock != p.stock + COALESCE(t.q, 0)""",
    "confirmed_order_charged_once": """
        SELECT o.id FROM orders.orders o
        LEFT JOIN payments.charges c ON c.order_id = o.id AND c.status = 'CHARGED'
        WHERE o.status = 'CONFIRMED' AND (c.order_id IS NULL OR c.amount_cents != o.total_cents)""",
    "confirmed_order_stock_committed": """
        SELECT o.id FROM orders.orders o
        LEFT JOIN inventory.reservations r ON r.order_id = o.id
        WHERE o.status = 'CONFIRMED' AND COALESCE(r.status, '') != 'COMMITTED'""",
    "no_charge_without_confirmed_order": """
        SELECT c.order_id FROM payments.charges c
        LEFT JOIN orders.orders o ON o.id = c.order_id
        WHERE c.status = 'CHARGED' AND COALESCE(o.status, '') != 'CONFIRMED'""",
    "no_stock_held_by_rejected_order": """
        SELECT r.order_id FROM inventory.reservations r
        JOIN orders.orders o ON o.id = r.order_id
        WHERE o.status = 'REJECTED' AND r.status != 'RELEASED'""",
    "wallet_balances": """
        SELECT w.user_id FROM payments.wallets w
        WHERE w.balance_cents != (
            SELECT COALESCE(SUM(amount_cents), 0) FROM payments.deposits d WHERE d.user_id = w.user_id
        ) - (
            SELECT COALESCE(SUM(amount_cents), 0) FROM payments.charges c
            WHERE c.user_id = w.user_id AND c.status = 'CHARGED'
        )""",
    "deposit_credited_once": """
        SELECT MIN(d.id) FROM payments.deposits d WHERE d.idempotency_key IS NOT NULL
        GROUP BY d.user_id, d.idempotency_key HAVING COUNT(*) > 1""",
    "notification_delivered_once": """
        SELECT o.id FROM orders.orders o
        WHERE o.status = 'CONFIRMED'
          AND (SELECT COUNT(*) FROM notifications.notifications n WHERE n.key = 'order-' || o.id) != 1""",
    "no_pending_orders": "SELECT id FROM orders.orders WHERE status = 'PENDING'",
}


@dataclass
class AuditReport:
    """Ids breaking each invariant (empty lists when the system is consistent), and what was counted."""

    anomalies: dict[str, list[int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.anomalies.values())

    def summary(self) -> str:
        broken = {name: ids[:10] for name, ids in self.anomalies.items() if ids}
        return "consistent" if not broken else f"anomalies: {broken}"


def database_paths(run_dir: Path, topology: str) -> dict[str, Path]:
    """Context -> database file of a run directory."""
    if topology == "monolith":
        return dict.fromkeys(CONTEXTS, run_dir / "monolith.db")
    return {context: run_dir / f"{context}.db" for context in CONTEXTS}


def audit(run_dir: Path, topology: str) -> AuditReport:
    """Check every invariant over the databases of ``run_dir``.

    On PostgreSQL (``databases.json`` in the run directory) separate databases cannot be joined: each context's
    tables are first copied into a SQLite file of their own (:func:`copy_postgres`), and the same checks run there."""
    with tempfile.TemporaryDirectory(prefix="archbench-audit-") as copies:
        if (run_dir / DATABASES_FILE).exists():
            paths = {c: copy_postgres(run_dir, c, topology, Path(copies) / f"{c}.db") for c in CONTEXTS}
        else:
            paths = database_paths(run_dir, topology)
        return _audit(paths)


def copy_postgres(run_dir: Path, context: str, topology: str, path: Path) -> Path:
    """Copy the tables ``context`` owns from its PostgreSQL database (the monolith's for every context) to ``path``."""
    component = "monolith" if topology == "monolith" else context
    copy = sqlite3.connect(path)
    try:
        with admin_connect(run_dir, component) as source:
            tables = [
                str(row[0])
                for row in source.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                ).fetchall()
            ]
            for table in tables:
                cursor = source.execute(f'SELECT * FROM "{table}"')
                columns = [column.name for column in cursor.description or ()]
                copy.execute(f'CREATE TABLE "{table}" ({", ".join(columns)})')
                marks = ", ".join("?" * len(columns))
                copy.executemany(f'INSERT INTO "{table}" VALUES ({marks})', cursor.fetchall())
        copy.commit()
    finally:
        copy.close()
    return path


def _audit(paths: dict[str, Path]) -> AuditReport:
    conn = sqlite3.connect("file::memory:", uri=True)
    try:
        for context, path in paths.items():
            if not path.exists():
                raise FileNotFoundError(f"no database for {context}: {path}")
            conn.execute(f"ATTACH DATABASE ? AS {context}", (f"file:{path}?mode=ro",))
        report = AuditReport()
        for name, query in CHECKS.items():
            report.anomalies[name] = [int(row[0]) for row in conn.execute(query)]
        for status in ("CONFIRMED", "REJECTED", "PENDING"):
            (n,) = conn.execute("SELECT COUNT(*) FROM orders.orders WHERE status = ?", (status,)).fetchone()
            report.counts[f"orders_{status.lower()}"] = int(n)
        return report
    finally:
        conn.close()

"""Databases made by earlier versions open with this one: the tables get their new columns, and an orders table whose
idempotency keys were unique across users is rebuilt with keys per user, its rows kept."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shop import orders, payments
from shop.db import UnitOfWork, columns_of, connect, create_schema
from shop.errors import IdempotencyKeyReused
from shop.inventory import Line
from shop.orders import Orders, fingerprint
from shop.payments import Payments

ANN, BOB = 1, 2

# The orders schema of the first release (no leases), and of the release before keys were per user.
FIRST_ORDERS = """
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
    step TEXT NOT NULL DEFAULT 'started',
    total_cents INTEGER,
    reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX orders_pending ON orders (status) WHERE status = 'PENDING';
CREATE TABLE order_lines (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at REAL
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
"""
LEASED_ORDERS = FIRST_ORDERS.replace(
    "    updated_at REAL NOT NULL\n);",
    "    updated_at REAL NOT NULL,\n    owner TEXT,\n    lease_until REAL NOT NULL DEFAULT 0\n);",
).replace(
    "    delivered_at REAL\n);",
    "    delivered_at REAL,\n    claimed_by TEXT,\n    claim_until REAL NOT NULL DEFAULT 0\n);",
)
OLD_PAYMENTS = """
CREATE TABLE wallets (user_id INTEGER PRIMARY KEY, balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0));
CREATE TABLE deposits (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0)
);
CREATE TABLE charges (
    order_id INTEGER PRIMARY KEY,
    user_id INTEGER,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('CHARGED', 'REFUNDED', 'VOID'))
);
"""
LINES = (Line(1, 2),)


def old_orders_db(path: Path, schema: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(schema)
    conn.execute(
        "INSERT INTO orders (id, user_id, idempotency_key, fingerprint, status, step, total_cents, created_at, "
        "updated_at) VALUES (5, ?, 'k1', ?, 'CONFIRMED', 'confirmed', 500, 1.0, 2.0)",
        (ANN, fingerprint(ANN, LINES)),
    )
    conn.execute("INSERT INTO order_lines VALUES (5, 1, 2, 250)")
    conn.execute("INSERT INTO outbox (order_id, user_id, message, delivered_at) VALUES (5, ?, 'sent', 3.0)", (ANN,))
    conn.commit()
    conn.close()


def opened(path: Path, upgrade: Callable[[sqlite3.Connection], None], schema: str) -> sqlite3.Connection:
    """Open ``path`` as a process does: upgrade, then the schema."""
    conn = connect(path)
    upgrade(conn)
    create_schema(conn, schema)
    return conn


def indexes(conn: sqlite3.Connection, table: str) -> dict[str, list[str]]:
    return {
        str(name): [str(row[2]) for row in conn.execute(f'PRAGMA index_info("{name}")')]
        for _, name, *_ in conn.execute(f"PRAGMA index_list({table})").fetchall()
    }


@pytest.mark.parametrize("schema", [FIRST_ORDERS, LEASED_ORDERS], ids=["first", "leased"])
def test_an_old_orders_database_gets_keys_per_user(tmp_path: Path, schema: str) -> None:
    db = tmp_path / "orders.db"
    old_orders_db(db, schema)

    conn = opened(db, orders.upgrade, orders.SCHEMA)

    order = Orders(conn).get(5)
    assert (order.user_id, order.status, order.total_cents, order.created_at) == (ANN, "CONFIRMED", 500, 1.0)
    assert [(line.product_id, line.quantity, line.price_cents) for line in order.lines] == [(1, 2, 250)]
    assert {"owner", "lease_until"} <= set(columns_of(conn, "orders"))
    assert {"claimed_by", "claim_until"} <= set(columns_of(conn, "outbox"))
    assert indexes(conn, "orders") == {
        "orders_pending": ["status"],
        "orders_user_key": ["user_id", "idempotency_key"],
    }
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with UnitOfWork(conn) as uow:
        assert Orders(conn).find_by_key(ANN, "k1", fingerprint(ANN, LINES)) == order
        assert Orders(conn).find_by_key(BOB, "k1", fingerprint(BOB, LINES)) is None
        with pytest.raises(IdempotencyKeyReused):
            Orders(conn).find_by_key(ANN, "k1", fingerprint(ANN, (Line(2, 1),)))
        bobs = Orders(conn).create(BOB, "k1", fingerprint(BOB, LINES), LINES)
        with pytest.raises(sqlite3.IntegrityError):
            Orders(conn).create(ANN, "k1", fingerprint(ANN, LINES), LINES)
        uow.commit()
    assert bobs > 5
    with pytest.raises(sqlite3.IntegrityError):  # the lines still refer to orders that exist
        conn.execute("INSERT INTO order_lines VALUES (999, 1, 1, NULL)")
    conn.close()


def test_the_rebuilt_table_has_its_unique_index_at_once(tmp_path: Path) -> None:
    # A process already serving (its create_schema done) never sees the rebuilt table without the per-user guard.
    db = tmp_path / "orders.db"
    old_orders_db(db, LEASED_ORDERS)
    conn = connect(db)

    orders.upgrade(conn)

    assert indexes(conn, "orders") == {
        "orders_pending": ["status"],
        "orders_user_key": ["user_id", "idempotency_key"],
    }
    conn.close()


def test_upgrading_twice_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    old_orders_db(db, FIRST_ORDERS)
    opened(db, orders.upgrade, orders.SCHEMA).close()
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT sql FROM sqlite_schema ORDER BY name").fetchall()
    conn.close()

    opened(db, orders.upgrade, orders.SCHEMA).close()

    conn = sqlite3.connect(db)
    assert conn.execute("SELECT sql FROM sqlite_schema ORDER BY name").fetchall() == before
    conn.close()


def test_a_new_database_needs_no_upgrade(tmp_path: Path) -> None:
    conn = opened(tmp_path / "orders.db", orders.upgrade, orders.SCHEMA)
    assert "orders_user_key" in indexes(conn, "orders")
    conn.close()
    conn = opened(tmp_path / "payments.db", payments.upgrade, payments.SCHEMA)
    assert indexes(conn, "deposits") == {"deposits_user_key": ["user_id", "idempotency_key"]}
    conn.close()


def test_processes_starting_together_upgrade_once(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    old_orders_db(db, LEASED_ORDERS)
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            conn = connect(db)
            start.wait()
            orders.upgrade(conn)
            create_schema(conn, orders.SCHEMA)
            conn.close()
        except BaseException as exc:  # reported below, with the thread's own traceback
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    conn = connect(db)
    assert indexes(conn, "orders")["orders_user_key"] == ["user_id", "idempotency_key"]
    assert [row[0] for row in conn.execute("SELECT id FROM orders")] == [5]
    conn.close()


def test_an_old_payments_database_takes_keyed_deposits(tmp_path: Path) -> None:
    db = tmp_path / "payments.db"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_PAYMENTS)
    conn.execute("INSERT INTO deposits (user_id, amount_cents) VALUES (?, 700)", (ANN,))
    conn.execute("INSERT INTO wallets VALUES (?, 700)", (ANN,))
    conn.commit()
    conn.close()

    conn = opened(db, payments.upgrade, payments.SCHEMA)

    assert {"idempotency_key", "balance_after_cents"} <= set(columns_of(conn, "deposits"))
    assert indexes(conn, "deposits") == {"deposits_user_key": ["user_id", "idempotency_key"]}
    with UnitOfWork(conn) as uow:
        assert Payments(conn).deposit(ANN, 100, "d1") == 800
        assert Payments(conn).deposit(ANN, 100, "d1") == 800
        assert Payments(conn).deposit(ANN, 100) == 900
        uow.commit()
    (credited,) = conn.execute("SELECT SUM(amount_cents) FROM deposits WHERE user_id = ?", (ANN,)).fetchone()
    assert credited == Payments(conn).balance(ANN) == 900
    conn.close()

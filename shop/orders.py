"""Orders: the order record, its lines, the outbox of notifications to send, and the idempotency key.

In the monolith an order is created and confirmed inside one transaction. In the microservices the same table is the
saga's durable log: an order is recorded PENDING before the first remote step, ``step`` remembers the last step known to
have succeeded, and recovery finishes (``charged``) or compensates (anything earlier) every PENDING order.

Several coordinators may share the log (replicas of orders, workers of the monolith): an order has an ``owner`` (the
coordinator driving it) and a ``lease_until``, which the owner renews; another coordinator claims it only once the
lease has run out, or when the owner is a previous life of itself (see :class:`Owner`). Outbox rows are claimed the
same way (``claimed_by``, ``claim_until``) so that one row is handed over by one relay at a time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shop.connection import Connection
from shop.db import UnitOfWork, add_columns, columns_of, valid_id
from shop.errors import IdempotencyKeyReused, InvalidInput, OrderNotFound
from shop.inventory import Line, PricedLine, total_cents

# An idempotency key is the user's: two users may send the same one (orders_user_key), as a payment API scopes keys
# per account.
_ORDERS_TABLE = """(
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
    step TEXT NOT NULL DEFAULT 'started',
    total_cents INTEGER,
    reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
)"""

_ORDERS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS orders_pending ON orders (status) WHERE status = 'PENDING'",
    "CREATE UNIQUE INDEX IF NOT EXISTS orders_user_key ON orders (user_id, idempotency_key)",
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS orders {_ORDERS_TABLE};
{_ORDERS_INDEXES[0]};
{_ORDERS_INDEXES[1]};
CREATE TABLE IF NOT EXISTS order_lines (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at REAL,
    claimed_by TEXT,
    claim_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;
"""

MAX_KEY = 255
# Printable ASCII, no space first or last: what an HTTP header carries intact (clients refuse to send the spaces around
# a value, and servers strip them).
KEY_PATTERN = "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"

# Added to databases created before leases existed (CREATE TABLE IF NOT EXISTS leaves an existing table as it is).
LEASE_COLUMNS = {
    "orders": (("owner", "TEXT"), ("lease_until", "REAL NOT NULL DEFAULT 0")),
    "outbox": (("claimed_by", "TEXT"), ("claim_until", "REAL NOT NULL DEFAULT 0")),
}


def add_lease_columns(conn: Connection) -> None:
    """Give an orders database made before leases its owner and claim columns (idempotent)."""
    add_columns(conn, LEASE_COLUMNS)


def upgrade(conn: Connection) -> None:
    """Bring an orders database made by an earlier version to this schema (idempotent): lease columns, and keys
    scoped per user. Run it before :func:`~shop.db.create_schema`, which then adds the indexes. SQLite only: no
    PostgreSQL database predates this schema."""
    if conn.engine != "sqlite":
        return
    add_lease_columns(conn)
    scope_keys_per_user(conn)


def _global_key_index(conn: Connection) -> bool:
    """Whether ``orders`` still has a unique index on ``idempotency_key`` alone (keys shared by every user)."""
    for _, name, unique, *_ in conn.execute("PRAGMA index_list(orders)").fetchall():
        quoted = '"' + str(name).replace('"', '""') + '"'
        if unique and [row[2] for row in conn.execute(f"PRAGMA index_info({quoted})").fetchall()] == [
            "idempotency_key"
        ]:
            return True
    return False


def scope_keys_per_user(conn: Connection) -> None:
    """Drop the global uniqueness of idempotency keys from an orders table made before keys were per user.

    It was a column constraint (``UNIQUE``), which SQLite cannot drop: the table is rebuilt with the same rows and
    this version's indexes (the documented way: new table, copy, drop, rename; foreign keys off meanwhile, since
    order_lines refers to orders). One transaction, decided again under the write lock: of processes starting together
    on one file, one rebuilds, and none sees the table without its unique index.
    """
    if not _global_key_index(conn):
        return
    (foreign_keys,) = conn.execute("PRAGMA foreign_keys").fetchone()
    conn.execute("PRAGMA foreign_keys = OFF")  # no effect inside a transaction: set before it
    try:
        with UnitOfWork(conn) as uow:
            if _global_key_index(conn):
                conn.execute(f"CREATE TABLE orders_rebuilt {_ORDERS_TABLE}")
                names = ", ".join(columns_of(conn, "orders_rebuilt"))
                conn.execute(f"INSERT INTO orders_rebuilt ({names}) SELECT {names} FROM orders")
                conn.execute("DROP TABLE orders")
                conn.execute("ALTER TABLE orders_rebuilt RENAME TO orders")
                for index in _ORDERS_INDEXES:
                    conn.execute(index)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"rebuilding orders broke foreign keys: {broken[:5]}")
                uow.commit()
    finally:
        conn.execute(f"PRAGMA foreign_keys = {int(foreign_keys)}")


@dataclass(frozen=True, slots=True)
class Owner:
    """Who drives an order or hands over an outbox row: one coordinator, for the life of one process.

    ``instance`` names the process among those alive at one time (host and process name: ``orders-1`` on this
    machine, the pod in Kubernetes); ``id`` adds what makes this life of it unique. A coordinator may take over at
    once what a previous life of the same instance owned (that process is gone: one instance runs at a time), and
    what anyone else owned only once the lease has run out.
    """

    instance: str
    id: str

    @classmethod
    def new(cls, instance: str) -> Owner:
        return cls(instance, f"{instance}#{os.urandom(6).hex()}")

    @property
    def prefix(self) -> str:
        return f"{self.instance}#"


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: int
    quantity: int
    price_cents: int | None


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    user_id: int
    status: str
    step: str
    total_cents: int | None
    reason: str | None
    lines: tuple[OrderLine, ...]
    created_at: float

    def requested(self) -> tuple[Line, ...]:
        return tuple(Line(line.product_id, line.quantity) for line in self.lines)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    order_id: int
    user_id: int
    message: str
    attempts: int

    @property
    def key(self) -> str:
        """De-duplication key of the notification: one per order."""
        return f"order-{self.order_id}"


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= MAX_KEY and re.search(KEY_PATTERN, key) is not None


def check_key(key: str | None) -> str:
    if key is None or not _valid_key(key):
        raise InvalidInput(f"an Idempotency-Key header of 1 to {MAX_KEY} printable characters is required")
    return key


def check_optional_key(key: str | None) -> str | None:
    """An Idempotency-Key where one is optional (deposits): None when absent, else the same rules as checkouts."""
    if key is not None and not _valid_key(key):
        raise InvalidInput(f"an Idempotency-Key header must have 1 to {MAX_KEY} printable characters")
    return key


def fingerprint(user_id: int, lines: Sequence[Line]) -> str:
    """What identifies a checkout request, to detect a key reused for a different one."""
    return f"{user_id}:" + ",".join(f"{line.product_id}x{line.quantity}" for line in lines)


def confirmation_message(order_id: int, total: int) -> str:
    return f"Order {order_id} confirmed: {total / 100:.2f} paid."


class Orders:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def find_by_key(self, user_id: int, key: str, print_: str) -> Order | None:
        """The order ``user_id`` already placed with ``key``; a different request under the same key is refused.

        Keys are the user's own: another user's order under the same key is not seen (nor revealed)."""
        row = self.conn.execute(
            "SELECT id, fingerprint FROM orders WHERE user_id = ? AND idempotency_key = ?", (user_id, key)
        ).fetchone()
        if row is None:
            return None
        if row[1] != print_:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different order")
        return self.get(int(row[0]))

    def create(
        self,
        user_id: int,
        key: str,
        print_: str,
        lines: Sequence[Line],
        owner: str | None = None,
        lease_until: float = 0.0,
    ) -> int:
        """Record a PENDING order with its requested lines, owned by ``owner`` until ``lease_until``; returns its id."""
        now = time.time()
        cur = self.conn.execute(
            "INSERT INTO orders (user_id, idempotency_key, fingerprint, status, created_at, updated_at, owner, "
            "lease_until) VALUES (?, ?, ?, 'PENDING', ?, ?, ?, ?) RETURNING id",
            (user_id, key, print_, now, now, owner, lease_until),
        )
        order_id = int(cur.fetchone()[0])
        self.conn.executemany(
            "INSERT INTO order_lines (order_id, product_id, quantity) VALUES (?, ?, ?)",
            [(order_id, line.product_id, line.quantity) for line in lines],
        )
        return order_id

    def record_step(self, order_id: int, step: str) -> None:
        self.conn.execute("UPDATE orders SET step = ?, updated_at = ? WHERE id = ?", (step, time.time(), order_id))

    def confirm(self, order_id: int, user_id: int, priced: Sequence[PricedLine]) -> None:
        """Mark the order CONFIRMED at the reserved prices and queue its notification in the outbox."""
        total = total_cents(priced)
        self.conn.executemany(
            "UPDATE order_lines SET price_cents = ? WHERE order_id = ? AND product_id = ?",
            [(p.price_cents, order_id, p.product_id) for p in priced],
        )
        self.conn.execute(
            "UPDATE orders SET status = 'CONFIRMED', step = 'confirmed', total_cents = ?, updated_at = ? WHERE id = ?",
            (total, time.time(), order_id),
        )
        self.conn.execute(
            "INSERT INTO outbox (order_id, user_id, message) VALUES (?, ?, ?)",
            (order_id, user_id, confirmation_message(order_id, total)),
        )

    def mark_compensating(self, order_id: int, reason: str) -> None:
        """Remember why the order is being compensated, before the first compensation is sent."""
        self.conn.execute(
            "UPDATE orders SET step = 'compensating', reason = ?, updated_at = ? WHERE id = ? AND status = 'PENDING'",
            (reason, time.time(), order_id),
        )

    def reject(self, order_id: int, reason: str) -> None:
        self.conn.execute(
            "UPDATE orders SET status = 'REJECTED', step = 'compensated', reason = ?, updated_at = ? "
            "WHERE id = ? AND status != 'CONFIRMED'",
            (reason, time.time(), order_id),
        )

    def get(self, order_id: int) -> Order:
        row = None
        if valid_id(order_id):
            row = self.conn.execute(
                "SELECT id, user_id, status, step, total_cents, reason, created_at FROM orders WHERE id = ?",
                (order_id,),
            ).fetchone()
        if row is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        lines = self.conn.execute(
            "SELECT product_id, quantity, price_cents FROM order_lines WHERE order_id = ? ORDER BY product_id",
            (order_id,),
        ).fetchall()
        oid, user_id, status, step, total, reason, created = row
        return Order(oid, user_id, status, step, total, reason, tuple(OrderLine(*line) for line in lines), created)

    def pending(self, older_than: float = 0.0) -> list[int]:
        """Ids of PENDING orders last touched more than ``older_than`` seconds ago, or left half-compensated.

        An order in step ``compensating`` was given up by its checkout (a compensation could not be delivered), so no
        one drives it any more whatever its age; any other PENDING order may still be in flight until it is stale.
        """
        rows = self.conn.execute(
            "SELECT id FROM orders WHERE status = 'PENDING' AND (updated_at <= ? OR step = 'compensating') ORDER BY id",
            (time.time() - older_than,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    # ---- ownership of PENDING orders ----------------------------------------------------------------------------

    def claimable(self, owner: Owner, now: float) -> list[int]:
        """Ids of PENDING orders ``owner`` may take over: no owner, a lease run out, or a previous life's."""
        rows = self.conn.execute(
            "SELECT id FROM orders WHERE status = 'PENDING' AND "
            + _TAKEABLE.format(who="owner", until="lease_until")
            + " ORDER BY id",
            (now, owner.id, len(owner.prefix), owner.prefix),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def claim(self, order_id: int, owner: Owner, now: float, until: float) -> bool:
        """Take over a PENDING order if it is still claimable (atomic: one claimant wins); returns whether it did."""
        cur = self.conn.execute(
            "UPDATE orders SET owner = ?, lease_until = ? WHERE id = ? AND status = 'PENDING' AND "
            + _TAKEABLE.format(who="owner", until="lease_until"),
            (owner.id, until, order_id, now, owner.id, len(owner.prefix), owner.prefix),
        )
        return cur.rowcount == 1

    def renew(self, owner: Owner, order_ids: Sequence[int], until: float) -> int:
        """Extend the leases of ``owner``'s PENDING orders among ``order_ids``; returns how many were extended."""
        if not order_ids:
            return 0
        marks = ",".join("?" * len(order_ids))
        cur = self.conn.execute(
            f"UPDATE orders SET lease_until = ? WHERE owner = ? AND status = 'PENDING' AND id IN ({marks})",
            (until, owner.id, *order_ids),
        )
        return cur.rowcount

    def release(self, order_id: int, owner: Owner) -> None:
        """Give up the lease of an order ``owner`` stops driving, so that recovery may take it at once."""
        self.conn.execute("UPDATE orders SET lease_until = 0 WHERE id = ? AND owner = ?", (order_id, owner.id))

    # ---- outbox ---------------------------------------------------------------------------------------------------

    def claim_undelivered(self, owner: Owner, now: float, until: float, limit: int) -> list[OutboxItem]:
        """Claim up to ``limit`` undelivered rows no other relay holds (atomic); returns them by id."""
        rows = self.conn.execute(
            "UPDATE outbox SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT id FROM outbox "
            "WHERE delivered_at IS NULL AND "
            + _TAKEABLE.format(who="claimed_by", until="claim_until")
            + " ORDER BY id LIMIT ?) RETURNING id, order_id, user_id, message, attempts",
            (owner.id, until, now, owner.id, len(owner.prefix), owner.prefix, limit),
        ).fetchall()
        return sorted((OutboxItem(*row) for row in rows), key=lambda item: item.id)

    def unclaim(self, outbox_id: int, owner: Owner) -> None:
        """Let go of a claimed row (not handed over): any relay may take it again."""
        self.conn.execute(
            "UPDATE outbox SET claimed_by = NULL, claim_until = 0 WHERE id = ? AND claimed_by = ?",
            (outbox_id, owner.id),
        )

    def undelivered(self, limit: int = 100) -> list[OutboxItem]:
        rows = self.conn.execute(
            "SELECT id, order_id, user_id, message, attempts FROM outbox WHERE delivered_at IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxItem(*row) for row in rows]

    def mark_delivered(self, outbox_id: int) -> None:
        self.conn.execute(
            "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?", (time.time(), outbox_id)
        )

    def mark_attempt(self, outbox_id: int) -> None:
        """Count a failed hand-over and let go of the row's claim."""
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, claimed_by = NULL, claim_until = 0 WHERE id = ?", (outbox_id,)
        )


# What another coordinator may take: nobody's, a lease run out, or held by a previous life of the same instance.
# Parameters: now, my id, length of my prefix, my prefix.
_TAKEABLE = "({who} IS NULL OR {until} <= ? OR ({who} != ? AND substr({who}, 1, ?) = ?))"

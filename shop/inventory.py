"""Inventory: the catalog, stock, and reservations keyed by order id.

Stock is taken with a conditional UPDATE (``stock >= quantity``), so concurrent checkouts of the last units never
oversell, whether they run in one process or in several sharing nothing but this database.

Reservation states: HELD (stock taken, order not final) -> COMMITTED (sold) or RELEASED (stock given back). A release
that arrives before its reservation leaves a RELEASED tombstone, so that the late reservation is refused.
Stock is conserved: ``initial_stock = stock + held + committed`` for every product.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shop.connection import Connection
from shop.db import valid_id
from shop.errors import InvalidInput, InvalidState, OutOfStock, ProductNotFound, StepCancelled

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents > 0),
    stock INTEGER NOT NULL CHECK (stock >= 0),
    initial_stock INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    order_id INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('HELD', 'COMMITTED', 'RELEASED'))
);
CREATE TABLE IF NOT EXISTS reservation_lines (
    order_id INTEGER NOT NULL REFERENCES reservations (order_id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
"""

MAX_PAGE = 100
MAX_QUANTITY = 1000
MAX_LINES = 50


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    sku: str
    name: str
    price_cents: int
    stock: int


@dataclass(frozen=True, slots=True)
class Line:
    """One product and quantity of an order."""

    product_id: int
    quantity: int


@dataclass(frozen=True, slots=True)
class PricedLine:
    product_id: int
    quantity: int
    price_cents: int


def normalize_lines(lines: Iterable[Line]) -> tuple[Line, ...]:
    """Merge repeated products and sort by product id; refuse empty, oversized or non-positive requests."""
    merged: dict[int, int] = {}
    for line in lines:
        if not valid_id(line.product_id):
            raise ProductNotFound(f"product {line.product_id} does not exist")
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidInput(f"quantity must be between 1 and {MAX_QUANTITY}")
        merged[line.product_id] = merged.get(line.product_id, 0) + line.quantity
    if not 1 <= len(merged) <= MAX_LINES:
        raise InvalidInput(f"an order has 1 to {MAX_LINES} distinct products")
    if any(q > MAX_QUANTITY for q in merged.values()):
        raise InvalidInput(f"quantity must be between 1 and {MAX_QUANTITY}")
    return tuple(Line(pid, q) for pid, q in sorted(merged.items()))


def total_cents(lines: Sequence[PricedLine]) -> int:
    return sum(line.quantity * line.price_cents for line in lines)


class Inventory:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def page(self, limit: int, offset: int) -> tuple[list[Product], int]:
        """One page of the catalog by id, and the catalog size."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInput(f"limit must be 1..{MAX_PAGE} and offset >= 0")
        rows = self.conn.execute(
            "SELECT id, sku, name, price_cents, stock FROM products ORDER BY id LIMIT ? OFFSET ?",
            (limit, min(offset, 2**62)),
        ).fetchall()
        return [Product(*row) for row in rows], self.catalog_size()

    def catalog_size(self) -> int:
        """How many products there are. Products are only ever added by :meth:`seed`, which resets the count kept on
        the connection, so it is taken once per connection instead of once per page (a quarter of a page's CPU)."""
        size = self.conn.catalog_size
        if size is None:
            (count,) = self.conn.execute("SELECT COUNT(*) FROM products").fetchone()
            size = self.conn.catalog_size = int(count)
        return size

    def get(self, product_id: int) -> Product:
        row = None
        if valid_id(product_id):
            row = self.conn.execute(
                "SELECT id, sku, name, price_cents, stock FROM products WHERE id = ?", (product_id,)
            ).fetchone()
        if row is None:
            raise ProductNotFound(f"product {product_id} does not exist")
        return Product(*row)

    def reserve(self, order_id: int, lines: Iterable[Line]) -> list[PricedLine]:
        """Hold stock for ``order_id`` at current prices; reserving the same order again returns the same lines."""
        status = self._status(order_id)
        if status == "RELEASED":
            raise StepCancelled(f"the reservation of order {order_id} was already released")
        if status is not None:
            return self.lines(order_id)
        priced = []
        for line in normalize_lines(lines):
            product = self.get(line.product_id)
            cur = self.conn.execute(
                "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?",
                (line.quantity, line.product_id, line.quantity),
            )
            if cur.rowcount != 1:
                raise OutOfStock(f"product {line.product_id} has fewer than {line.quantity} units in stock")
            priced.append(PricedLine(line.product_id, line.quantity, product.price_cents))
        self.conn.execute("INSERT INTO reservations (order_id, status) VALUES (?, 'HELD')", (order_id,))
        self.conn.executemany(
            "INSERT INTO reservation_lines (order_id, product_id, quantity, price_cents) VALUES (?, ?, ?, ?)",
            [(order_id, p.product_id, p.quantity, p.price_cents) for p in priced],
        )
        return priced

    def commit(self, order_id: int) -> None:
        """Turn the held stock of ``order_id`` into a sale (idempotent)."""
        status = self._status(order_id)
        if status is None:
            raise InvalidState(f"order {order_id} holds no reservation")
        if status == "RELEASED":
            raise StepCancelled(f"the reservation of order {order_id} was already released")
        if status == "HELD":
            self.conn.execute("UPDATE reservations SET status = 'COMMITTED' WHERE order_id = ?", (order_id,))

    def release(self, order_id: int) -> str:
        """Give back the held stock of ``order_id`` (idempotent); with no reservation yet, leave a tombstone."""
        status = self._status(order_id)
        if status is None:
            self.conn.execute("INSERT INTO reservations (order_id, status) VALUES (?, 'RELEASED')", (order_id,))
            return "RELEASED"
        if status == "COMMITTED":
            raise InvalidState(f"the reservation of order {order_id} is committed")
        if status == "HELD":
            self.conn.executemany(
                "UPDATE products SET stock = stock + ? WHERE id = ?",
                [(p.quantity, p.product_id) for p in self.lines(order_id)],
            )
            self.conn.execute("UPDATE reservations SET status = 'RELEASED' WHERE order_id = ?", (order_id,))
        return "RELEASED"

    def lines(self, order_id: int) -> list[PricedLine]:
        rows = self.conn.execute(
            "SELECT product_id, quantity, price_cents FROM reservation_lines WHERE order_id = ? ORDER BY product_id",
            (order_id,),
        ).fetchall()
        return [PricedLine(*row) for row in rows]

    def reservation_status(self, order_id: int) -> str | None:
        return self._status(order_id)

    def _status(self, order_id: int) -> str | None:
        row = self.conn.execute("SELECT status FROM reservations WHERE order_id = ?", (order_id,)).fetchone()
        return str(row[0]) if row else None

    def seed(self, products: Iterable[tuple[str, str, int, int]]) -> None:
        """Insert seeded ``(sku, name, price_cents, stock)`` rows; they get ids 1..n on an empty table."""
        self.conn.catalog_size = None
        self.conn.executemany(
            "INSERT INTO products (sku, name, price_cents, stock, initial_stock) VALUES (?, ?, ?, ?, ?)",
            [(sku, name, price, stock, stock) for sku, name, price, stock in products],
        )

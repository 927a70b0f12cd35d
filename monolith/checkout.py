"""The monolith's checkout: every step in ONE transaction, so any refusal rolls all of them back.

Compare with ``microservices/saga.py``, which must build the same all-or-nothing from steps and compensations.
"""

from __future__ import annotations

from collections.abc import Sequence

from shop.connection import Connection
from shop.db import transactions
from shop.inventory import Inventory, Line, normalize_lines, total_cents
from shop.orders import Order, Orders, check_key, fingerprint
from shop.payments import Payments
from shop.users import Users


async def checkout(conn: Connection, user_id: int, items: Sequence[Line], key: str | None) -> tuple[Order, bool]:
    """Place the order; returns it and whether it is new (False: the Idempotency-Key was seen before)."""
    key = check_key(key)
    lines = normalize_lines(items)
    orders = Orders(conn)
    async for uow in transactions(conn):
        with uow:
            existing = orders.find_by_key(user_id, key, fingerprint(user_id, lines))
            if existing is not None:
                return existing, False
            Users(conn).get(user_id)
            order_id = orders.create(user_id, key, fingerprint(user_id, lines), lines)
            inventory = Inventory(conn)
            priced = inventory.reserve(order_id, lines)
            Payments(conn).charge(order_id, user_id, total_cents(priced))
            inventory.commit(order_id)
            orders.confirm(order_id, user_id, priced)
            uow.commit()
    return orders.get(order_id), True

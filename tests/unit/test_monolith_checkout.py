"""The monolith's checkout: every step in one transaction, so a refusal at any step leaves no trace at all.

The catalog is the small one of ``conftest``: 1 MUG 250c x10, 2 LAMP 1999c x3, 3 PEN 99c x1.
"""

from __future__ import annotations

import sqlite3

import pytest

from monolith.checkout import checkout
from shop.db import UnitOfWork
from shop.errors import (
    DomainError,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidInput,
    OutOfStock,
    ProductNotFound,
    UserNotFound,
)
from shop.inventory import Inventory, Line
from shop.orders import OrderLine, Orders
from shop.payments import Charge, Payments
from shop.users import Users

MUG, LAMP, PEN = 1, 2, 3
CART = [Line(MUG, 2), Line(LAMP, 1)]
CART_TOTAL = 2 * 250 + 1999


def new_user(conn: sqlite3.Connection, balance_cents: int, email: str = "ann@example.org") -> int:
    with UnitOfWork(conn) as uow:
        user = Users(conn).register(email, "Ann")
        if balance_cents:
            Payments(conn).deposit(user.id, balance_cents)
        uow.commit()
    return user.id


def count(conn: sqlite3.Connection, table: str) -> int:
    (n,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(n)


def stocks(conn: sqlite3.Connection) -> dict[int, int]:
    return {p.id: p.stock for p in Inventory(conn).page(10, 0)[0]}


def assert_no_trace(conn: sqlite3.Connection, user_id: int, balance_cents: int) -> None:
    """Nothing of a refused checkout remains: no order, reservation, charge or notification; stock and money intact."""
    for table in ("orders", "order_lines", "reservations", "reservation_lines", "charges", "outbox"):
        assert count(conn, table) == 0, table
    assert stocks(conn) == {MUG: 10, LAMP: 3, PEN: 1}
    assert Payments(conn).balance(user_id) == balance_cents
    assert not conn.in_transaction


async def test_checkout_confirms_and_writes_the_outbox(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 10_000)

    order, new = await checkout(shop_conn, ann, CART, "k1")

    assert new is True
    assert (order.user_id, order.status, order.step, order.total_cents) == (ann, "CONFIRMED", "confirmed", CART_TOTAL)
    assert order.lines == (OrderLine(MUG, 2, 250), OrderLine(LAMP, 1, 1999))
    assert Orders(shop_conn).get(order.id) == order
    assert stocks(shop_conn) == {MUG: 8, LAMP: 2, PEN: 1}
    assert Inventory(shop_conn).reservation_status(order.id) == "COMMITTED"
    assert Payments(shop_conn).get_charge(order.id) == Charge(order.id, ann, CART_TOTAL, "CHARGED")
    assert Payments(shop_conn).balance(ann) == 10_000 - CART_TOTAL
    [item] = Orders(shop_conn).undelivered()
    assert (item.order_id, item.user_id, item.message) == (order.id, ann, f"Order {order.id} confirmed: 24.99 paid.")
    assert not shop_conn.in_transaction


async def test_checkout_of_the_exact_balance_and_the_last_units(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 3 * 1999 + 99)

    order, _ = await checkout(shop_conn, ann, [Line(LAMP, 3), Line(PEN, 1)], "k1")

    assert order.status == "CONFIRMED"
    assert Payments(shop_conn).balance(ann) == 0
    assert stocks(shop_conn) == {MUG: 10, LAMP: 0, PEN: 0}


async def test_insufficient_funds_rolls_back_everything(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, CART_TOTAL - 1)

    with pytest.raises(InsufficientFunds):
        await checkout(shop_conn, ann, CART, "k1")

    assert_no_trace(shop_conn, ann, CART_TOTAL - 1)


async def test_a_refused_key_is_free_for_the_retry(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 100)
    with pytest.raises(InsufficientFunds):
        await checkout(shop_conn, ann, CART, "k1")
    with UnitOfWork(shop_conn) as uow:
        Payments(shop_conn).deposit(ann, 10_000)
        uow.commit()

    order, new = await checkout(shop_conn, ann, CART, "k1")

    assert (new, order.status) == (True, "CONFIRMED")
    assert Payments(shop_conn).balance(ann) == 10_100 - CART_TOTAL


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([Line(MUG, 2), Line(LAMP, 4)], OutOfStock),  # MUG is taken before LAMP fails
        ([Line(MUG, 2), Line(99, 1)], ProductNotFound),
        ([Line(MUG, 2), Line(PEN, 2)], OutOfStock),
    ],
)
async def test_stock_refusals_roll_back_everything(
    shop_conn: sqlite3.Connection, items: list[Line], error: type[DomainError]
) -> None:
    ann = new_user(shop_conn, 100_000)

    with pytest.raises(error):
        await checkout(shop_conn, ann, items, "k1")

    assert_no_trace(shop_conn, ann, 100_000)


async def test_unknown_user_is_refused_before_anything_is_written(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 10_000)

    with pytest.raises(UserNotFound):
        await checkout(shop_conn, ann + 1, CART, "k1")

    assert_no_trace(shop_conn, ann, 10_000)


@pytest.mark.parametrize(
    ("items", "key"),
    [(CART, None), (CART, ""), (CART, "x" * 256), (CART, "a\nb"), ([], "k1"), ([Line(MUG, 0)], "k1")],
    ids=["no-key", "empty-key", "long-key", "unprintable-key", "no-items", "zero-quantity"],
)
async def test_bad_requests_are_refused(shop_conn: sqlite3.Connection, items: list[Line], key: str | None) -> None:
    ann = new_user(shop_conn, 10_000)

    with pytest.raises(InvalidInput):
        await checkout(shop_conn, ann, items, key)

    assert_no_trace(shop_conn, ann, 10_000)


async def test_same_key_twice_places_one_order_and_charges_once(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 10_000)

    first, first_new = await checkout(shop_conn, ann, CART, "k1")
    again, again_new = await checkout(shop_conn, ann, CART, "k1")

    assert (first_new, again_new) == (True, False)
    assert again == first
    assert count(shop_conn, "orders") == 1
    assert count(shop_conn, "charges") == 1
    assert count(shop_conn, "outbox") == 1
    assert Payments(shop_conn).balance(ann) == 10_000 - CART_TOTAL
    assert stocks(shop_conn) == {MUG: 8, LAMP: 2, PEN: 1}
    assert not shop_conn.in_transaction


async def test_the_same_request_written_differently_is_the_same_order(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 10_000)
    first, _ = await checkout(shop_conn, ann, CART, "k1")

    again, new = await checkout(shop_conn, ann, [Line(LAMP, 1), Line(MUG, 1), Line(MUG, 1)], "k1")

    assert (again.id, new) == (first.id, False)
    assert Payments(shop_conn).balance(ann) == 10_000 - CART_TOTAL


async def test_the_replay_answers_even_when_it_could_no_longer_be_placed(shop_conn: sqlite3.Connection) -> None:
    # The replay of an order that took the last units and all the money must still answer with that order.
    ann = new_user(shop_conn, 3 * 1999)
    first, _ = await checkout(shop_conn, ann, [Line(LAMP, 3)], "k1")

    assert await checkout(shop_conn, ann, [Line(LAMP, 3)], "k1") == (first, False)


@pytest.mark.parametrize(
    "items", [[Line(MUG, 3), Line(LAMP, 1)], [Line(MUG, 2)]], ids=["other-quantity", "other-products"]
)
async def test_a_key_reused_for_another_request_is_refused(shop_conn: sqlite3.Connection, items: list[Line]) -> None:
    ann = new_user(shop_conn, 10_000)
    bob = new_user(shop_conn, 10_000, email="bob@example.org")
    first, _ = await checkout(shop_conn, ann, CART, "k1")

    with pytest.raises(IdempotencyKeyReused):
        await checkout(shop_conn, ann, items, "k1")

    assert Orders(shop_conn).get(first.id) == first
    assert count(shop_conn, "orders") == 1
    assert count(shop_conn, "charges") == 1
    assert Payments(shop_conn).balance(ann) == 10_000 - CART_TOTAL
    assert Payments(shop_conn).balance(bob) == 10_000
    assert stocks(shop_conn) == {MUG: 8, LAMP: 2, PEN: 1}
    assert not shop_conn.in_transaction


async def test_a_key_is_the_users_own(shop_conn: sqlite3.Connection) -> None:
    # Another user sending the same key places an order of their own: keys are scoped per user, and nothing says
    # that someone else used it.
    ann = new_user(shop_conn, 10_000)
    bob = new_user(shop_conn, 10_000, email="bob@example.org")
    anns, _ = await checkout(shop_conn, ann, CART, "k1")

    bobs, new = await checkout(shop_conn, bob, CART, "k1")

    assert new
    assert bobs.id != anns.id
    assert bobs.user_id == bob
    assert bobs.status == "CONFIRMED"
    assert await checkout(shop_conn, ann, CART, "k1") == (anns, False)
    assert await checkout(shop_conn, bob, CART, "k1") == (bobs, False)
    with pytest.raises(IdempotencyKeyReused):
        await checkout(shop_conn, bob, [Line(MUG, 2)], "k1")
    assert count(shop_conn, "charges") == 2
    assert Payments(shop_conn).balance(ann) == Payments(shop_conn).balance(bob) == 10_000 - CART_TOTAL
    assert stocks(shop_conn) == {MUG: 6, LAMP: 1, PEN: 1}


async def test_stock_and_money_are_conserved_across_checkouts(shop_conn: sqlite3.Connection) -> None:
    ann = new_user(shop_conn, 4500)
    outcomes: list[tuple[str, int | str | None, bool]] = []
    for key, items in [
        ("k1", [Line(MUG, 4)]),
        ("k2", [Line(LAMP, 2)]),  # 3998 > 4500 - 1000: refused for money
        ("k3", [Line(MUG, 7)]),  # 6 mugs left: refused for stock
        ("k4", [Line(MUG, 6), Line(PEN, 1)]),
        ("k1", [Line(MUG, 4)]),
    ]:
        try:
            order, new = await checkout(shop_conn, ann, items, key)
            outcomes.append((key, order.total_cents, new))
        except DomainError as refusal:
            outcomes.append((key, refusal.code, False))

    assert outcomes == [
        ("k1", 1000, True),
        ("k2", "insufficient_funds", False),
        ("k3", "out_of_stock", False),
        ("k4", 1599, True),
        ("k1", 1000, False),
    ]
    assert stocks(shop_conn) == {MUG: 0, LAMP: 3, PEN: 0}
    (charged,) = shop_conn.execute("SELECT SUM(amount_cents) FROM charges WHERE status = 'CHARGED'").fetchone()
    assert Payments(shop_conn).balance(ann) == 4500 - charged == 4500 - 1000 - 1599
    (sold,) = shop_conn.execute("SELECT SUM(quantity) FROM order_lines").fetchone()
    assert sold == 4 + 6 + 1

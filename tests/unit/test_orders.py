"""Orders: idempotency keys and request fingerprints, the order's states, the saga log fields, and the outbox."""

from __future__ import annotations

import sqlite3

import jsonschema_rs
import msgspec
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plumbing import contract
from shop.db import MAX_ID, UnitOfWork
from shop.errors import IdempotencyKeyReused, InvalidInput, OrderNotFound
from shop.inventory import Line, PricedLine, normalize_lines
from shop.orders import MAX_KEY, Order, OrderLine, Orders, OutboxItem, check_key, confirmation_message, fingerprint

ANN, BOB = 1, 2
LINES = (Line(1, 2), Line(3, 1))
PRICED = [PricedLine(1, 2, 250), PricedLine(3, 1, 99)]


def create(conn: sqlite3.Connection, key: str = "k1", user_id: int = ANN, lines: tuple[Line, ...] = LINES) -> int:
    with UnitOfWork(conn) as uow:
        order_id = Orders(conn).create(user_id, key, fingerprint(user_id, lines), lines)
        uow.commit()
    return order_id


def confirm(conn: sqlite3.Connection, order_id: int, user_id: int = ANN) -> None:
    with UnitOfWork(conn) as uow:
        Orders(conn).confirm(order_id, user_id, PRICED)
        uow.commit()


def reject(conn: sqlite3.Connection, order_id: int, reason: str) -> None:
    with UnitOfWork(conn) as uow:
        Orders(conn).reject(order_id, reason)
        uow.commit()


def age(conn: sqlite3.Connection, order_id: int, seconds: float) -> None:
    """Pretend the order was last touched ``seconds`` earlier than it was."""
    conn.execute("UPDATE orders SET updated_at = updated_at - ? WHERE id = ?", (seconds, order_id))


# --- keys and fingerprints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "x" * MAX_KEY, "a key with spaces", "550e8400-e29b-41d4"])
def test_check_key_accepts_printable_keys(key: str) -> None:
    assert check_key(key) == key


# Non-ASCII is refused too: header values travel as ASCII, and the OpenAPI document says so.
@pytest.mark.parametrize(
    "key", [None, "", "x" * (MAX_KEY + 1), "line\nbreak", "tab\there", "nul\x00", "\x7f", "clé-ünïcode-✓"]
)
def test_check_key_refuses_missing_or_unprintable_keys(key: str | None) -> None:
    with pytest.raises(InvalidInput):
        check_key(key)


@pytest.mark.parametrize("key", [" ", " k", "k ", "   "])
def test_check_key_refuses_spaces_first_or_last(key: str) -> None:
    """HTTP strips them (and clients refuse to send them): the document refuses them, so the server does too."""
    with pytest.raises(InvalidInput):
        check_key(key)


def test_check_key_is_the_document_pattern() -> None:
    schema = msgspec.json.schema(contract.Key)
    for key in ["k", "a b", " ", " k", "k ", "~" * MAX_KEY, "é", "\x7f"]:
        documented = jsonschema_rs.validator_for(schema).is_valid(key)
        try:
            check_key(key)
        except InvalidInput:
            assert not documented, key
        else:
            assert documented, key


def test_fingerprint_names_user_products_and_quantities() -> None:
    assert fingerprint(5, LINES) == "5:1x2,3x1"


def test_fingerprint_tells_requests_apart() -> None:
    prints = {
        fingerprint(ANN, LINES),
        fingerprint(BOB, LINES),
        fingerprint(ANN, (Line(1, 2),)),
        fingerprint(ANN, (Line(1, 3), Line(3, 1))),
        fingerprint(ANN, (Line(1, 2), Line(4, 1))),
        fingerprint(12, (Line(1, 1),)),
        fingerprint(1, (Line(21, 1),)),
    }
    assert len(prints) == 7


def test_fingerprint_of_normalised_lines_ignores_order_and_splitting() -> None:
    shuffled = normalize_lines([Line(3, 1), Line(1, 1), Line(1, 1)])

    assert fingerprint(ANN, shuffled) == fingerprint(ANN, normalize_lines(LINES))


# --- the order record ------------------------------------------------------------------------------------------------


def test_create_records_a_pending_order_with_its_requested_lines(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn)

    order = Orders(orders_conn).get(order_id)
    unpriced = (OrderLine(1, 2, None), OrderLine(3, 1, None))
    assert order == Order(order_id, ANN, "PENDING", "started", None, None, unpriced, order.created_at)
    assert order.requested() == LINES
    assert Orders(orders_conn).pending() == [order_id]


def test_the_same_key_cannot_be_recorded_twice(orders_conn: sqlite3.Connection) -> None:
    # The last guard under find_by_key: the database itself refuses a second order of a user under one key.
    create(orders_conn, key="k1")

    refusal = sqlite3.IntegrityError if orders_conn.engine == "sqlite" else psycopg.IntegrityError
    with pytest.raises(refusal):
        create(orders_conn, key="k1", lines=(Line(1, 1),))


def test_the_same_key_is_recorded_once_per_user(orders_conn: sqlite3.Connection) -> None:
    anns = create(orders_conn, key="k1")

    bobs = create(orders_conn, key="k1", user_id=BOB)

    assert bobs != anns
    assert Orders(orders_conn).find_by_key(ANN, "k1", fingerprint(ANN, LINES)) == Orders(orders_conn).get(anns)
    assert Orders(orders_conn).find_by_key(BOB, "k1", fingerprint(BOB, LINES)) == Orders(orders_conn).get(bobs)


@pytest.mark.parametrize("order_id", [0, -1, 99, MAX_ID, MAX_ID + 1])
def test_get_unknown_order(orders_conn: sqlite3.Connection, order_id: int) -> None:
    create(orders_conn)

    with pytest.raises(OrderNotFound):
        Orders(orders_conn).get(order_id)


def test_find_by_key_without_order(orders_conn: sqlite3.Connection) -> None:
    assert Orders(orders_conn).find_by_key(ANN, "k1", fingerprint(ANN, LINES)) is None


def test_find_by_key_returns_the_order_of_the_same_request(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn, key="k1")

    found = Orders(orders_conn).find_by_key(ANN, "k1", fingerprint(ANN, LINES))

    assert found == Orders(orders_conn).get(order_id)


@pytest.mark.parametrize("lines", [(Line(1, 2),), (Line(1, 3), Line(3, 1))], ids=["other-products", "other-quantity"])
def test_find_by_key_with_another_request_is_refused(orders_conn: sqlite3.Connection, lines: tuple[Line, ...]) -> None:
    create(orders_conn, key="k1")

    with pytest.raises(IdempotencyKeyReused):
        Orders(orders_conn).find_by_key(ANN, "k1", fingerprint(ANN, lines))


def test_find_by_key_does_not_see_another_users_order(orders_conn: sqlite3.Connection) -> None:
    # Keys are scoped per user: another user's order under the same key is neither returned nor a refusal.
    create(orders_conn, key="k1")

    assert Orders(orders_conn).find_by_key(BOB, "k1", fingerprint(BOB, LINES)) is None


def test_record_step(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn)

    Orders(orders_conn).record_step(order_id, "charged")

    assert Orders(orders_conn).get(order_id).step == "charged"


def test_confirm_sets_total_prices_and_writes_the_outbox(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn)

    confirm(orders_conn, order_id)

    order = Orders(orders_conn).get(order_id)
    assert (order.status, order.step, order.total_cents) == ("CONFIRMED", "confirmed", 599)
    assert order.lines == (OrderLine(1, 2, 250), OrderLine(3, 1, 99))
    assert Orders(orders_conn).undelivered() == [
        OutboxItem(1, order_id, ANN, f"Order {order_id} confirmed: 5.99 paid.", 0)
    ]
    assert Orders(orders_conn).pending() == []


def test_confirm_and_outbox_row_roll_back_together(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn)

    with UnitOfWork(orders_conn):
        Orders(orders_conn).confirm(order_id, ANN, PRICED)

    assert Orders(orders_conn).get(order_id).status == "PENDING"
    assert Orders(orders_conn).undelivered() == []


def test_reject_a_pending_order(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn)

    reject(orders_conn, order_id, "insufficient_funds")

    order = Orders(orders_conn).get(order_id)
    assert (order.status, order.step, order.reason) == ("REJECTED", "compensated", "insufficient_funds")
    assert Orders(orders_conn).pending() == []
    assert Orders(orders_conn).undelivered() == []


def test_reject_does_not_override_a_confirmation(orders_conn: sqlite3.Connection) -> None:
    order_id = create(orders_conn)
    confirm(orders_conn, order_id)

    reject(orders_conn, order_id, "late compensation")

    order = Orders(orders_conn).get(order_id)
    assert (order.status, order.step, order.reason, order.total_cents) == ("CONFIRMED", "confirmed", None, 599)


def test_mark_compensating_remembers_the_reason_of_a_pending_order_only(orders_conn: sqlite3.Connection) -> None:
    pending, confirmed = create(orders_conn, key="k1"), create(orders_conn, key="k2")
    confirm(orders_conn, confirmed)

    Orders(orders_conn).mark_compensating(pending, "out_of_stock")
    Orders(orders_conn).mark_compensating(confirmed, "out_of_stock")

    order = Orders(orders_conn).get(pending)
    assert (order.status, order.step, order.reason) == ("PENDING", "compensating", "out_of_stock")
    assert Orders(orders_conn).get(confirmed).step == "confirmed"
    assert Orders(orders_conn).get(confirmed).reason is None


def test_pending_lists_only_pending_orders_by_id(orders_conn: sqlite3.Connection) -> None:
    first, confirmed, rejected, last = (create(orders_conn, key=f"k{i}") for i in range(4))
    confirm(orders_conn, confirmed)
    reject(orders_conn, rejected, "out_of_stock")

    assert Orders(orders_conn).pending() == [first, last]


def test_pending_older_than_skips_orders_touched_recently(orders_conn: sqlite3.Connection) -> None:
    fresh, stale = create(orders_conn, key="k1"), create(orders_conn, key="k2")
    age(orders_conn, stale, 120)

    assert Orders(orders_conn).pending(older_than=60) == [stale]
    assert Orders(orders_conn).pending() == [fresh, stale]

    # A saga that records progress is alive again: recovery must leave it to its owner.
    Orders(orders_conn).record_step(stale, "reserved")
    assert Orders(orders_conn).pending(older_than=60) == []


# --- outbox ----------------------------------------------------------------------------------------------------------


def test_outbox_item_key_is_one_per_order() -> None:
    assert OutboxItem(3, 42, ANN, "m", 0).key == "order-42"


def test_outbox_attempts_and_delivery(orders_conn: sqlite3.Connection) -> None:
    ids = [create(orders_conn, key=f"k{i}") for i in range(3)]
    for order_id in ids:
        confirm(orders_conn, order_id)
    first, second, third = Orders(orders_conn).undelivered()

    Orders(orders_conn).mark_attempt(first.id)
    Orders(orders_conn).mark_attempt(first.id)
    Orders(orders_conn).mark_delivered(second.id)

    assert [item.order_id for item in Orders(orders_conn).undelivered()] == [ids[0], ids[2]]
    assert Orders(orders_conn).undelivered()[0].attempts == 2
    assert Orders(orders_conn).undelivered(limit=1) == [Orders(orders_conn).undelivered()[0]]
    (attempts,) = orders_conn.execute("SELECT attempts FROM outbox WHERE id = ?", (second.id,)).fetchone()
    assert attempts == 1
    assert third.order_id == ids[2]


@pytest.mark.parametrize(("total", "text"), [(0, "0.00"), (5, "0.05"), (599, "5.99"), (100_000, "1000.00")])
def test_confirmation_message(total: int, text: str) -> None:
    assert confirmation_message(9, total) == f"Order 9 confirmed: {text} paid."


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, 10**12))
def test_confirmation_message_shows_exact_cents(total: int) -> None:
    assert confirmation_message(1, total) == f"Order 1 confirmed: {total // 100}.{total % 100:02d} paid."

"""Inventory: catalog pages, line normalisation, reservations and their transitions, and conservation of stock.

The catalog is the small one of ``conftest``: 1 MUG 250c x10, 2 LAMP 1999c x3, 3 PEN 99c x1.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shop import inventory
from shop.connection import Connection
from shop.db import MAX_ID, UnitOfWork, connect, create_schema, transactions
from shop.errors import DomainError, InvalidInput, InvalidState, OutOfStock, ProductNotFound, StepCancelled
from shop.inventory import (
    MAX_LINES,
    MAX_PAGE,
    MAX_QUANTITY,
    Inventory,
    Line,
    PricedLine,
    Product,
    normalize_lines,
    total_cents,
)
from tests.unit.conftest import OpenAny

MUG, LAMP, PEN = 1, 2, 3


def reserve(conn: sqlite3.Connection, order_id: int, *items: tuple[int, int]) -> list[PricedLine]:
    with UnitOfWork(conn) as uow:
        priced = Inventory(conn).reserve(order_id, [Line(p, q) for p, q in items])
        uow.commit()
    return priced


def commit(conn: sqlite3.Connection, order_id: int) -> None:
    with UnitOfWork(conn) as uow:
        Inventory(conn).commit(order_id)
        uow.commit()


def release(conn: sqlite3.Connection, order_id: int) -> str:
    with UnitOfWork(conn) as uow:
        status = Inventory(conn).release(order_id)
        uow.commit()
    return status


def stocks(conn: sqlite3.Connection) -> dict[int, int]:
    return {p.id: p.stock for p in Inventory(conn).page(MAX_PAGE, 0)[0]}


def assert_stock_conserved(conn: sqlite3.Connection) -> None:
    """``initial_stock = stock + held + committed`` for every product, and stock never negative."""
    rows = conn.execute(
        """
        SELECT p.id, p.initial_stock, p.stock, COALESCE(SUM(l.quantity), 0)
        FROM products p
        LEFT JOIN reservation_lines l ON l.product_id = p.id
            AND l.order_id IN (SELECT order_id FROM reservations WHERE status IN ('HELD', 'COMMITTED'))
        GROUP BY p.id
        """
    ).fetchall()
    assert rows
    for product_id, initial, stock, out in rows:
        assert stock >= 0, product_id
        assert initial == stock + out, product_id


# --- catalog ---------------------------------------------------------------------------------------------------------


def test_page_returns_products_by_id_and_the_catalog_size(inventory_conn: sqlite3.Connection) -> None:
    first, total = Inventory(inventory_conn).page(2, 0)
    rest, _ = Inventory(inventory_conn).page(2, 2)

    assert total == 3
    assert first == [Product(MUG, "MUG", "Mug", 250, 10), Product(LAMP, "LAMP", "Lamp", 1999, 3)]
    assert rest == [Product(PEN, "PEN", "Pen", 99, 1)]


@pytest.mark.parametrize("offset", [3, 1000, 2**62, 2**63, 10**30])
def test_page_past_the_end_is_empty(inventory_conn: sqlite3.Connection, offset: int) -> None:
    assert Inventory(inventory_conn).page(MAX_PAGE, offset) == ([], 3)


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (-1, 0), (MAX_PAGE + 1, 0), (10, -1)])
def test_page_bounds(inventory_conn: sqlite3.Connection, limit: int, offset: int) -> None:
    with pytest.raises(InvalidInput):
        Inventory(inventory_conn).page(limit, offset)


def test_get_product(inventory_conn: sqlite3.Connection) -> None:
    assert Inventory(inventory_conn).get(LAMP) == Product(LAMP, "LAMP", "Lamp", 1999, 3)


@pytest.mark.parametrize("product_id", [0, -1, 4, MAX_ID, MAX_ID + 1])
def test_get_unknown_product(inventory_conn: sqlite3.Connection, product_id: int) -> None:
    with pytest.raises(ProductNotFound):
        Inventory(inventory_conn).get(product_id)


# --- order lines -----------------------------------------------------------------------------------------------------


def test_normalize_lines_merges_duplicates_and_sorts() -> None:
    lines = [Line(3, 1), Line(1, 2), Line(3, 4), Line(2, 1)]

    assert normalize_lines(lines) == (Line(1, 2), Line(2, 1), Line(3, 5))


def test_normalize_lines_accepts_the_limits() -> None:
    assert normalize_lines([Line(1, MAX_QUANTITY - 1), Line(1, 1)]) == (Line(1, MAX_QUANTITY),)
    assert len(normalize_lines(Line(i, 1) for i in range(1, MAX_LINES + 1))) == MAX_LINES


@pytest.mark.parametrize(
    "lines",
    [
        [],
        [Line(1, 0)],
        [Line(1, -1)],
        [Line(1, MAX_QUANTITY + 1)],
        [Line(1, 600), Line(1, 401)],  # each line is fine, their sum is not
        [Line(i, 1) for i in range(1, MAX_LINES + 2)],
    ],
    ids=["empty", "zero", "negative", "too-many-units", "too-many-units-merged", "too-many-lines"],
)
def test_normalize_lines_refuses_bad_requests(lines: list[Line]) -> None:
    with pytest.raises(InvalidInput):
        normalize_lines(lines)


@pytest.mark.parametrize("product_id", [0, -1, MAX_ID + 1])
def test_normalize_lines_refuses_impossible_product_ids(product_id: int) -> None:
    with pytest.raises(ProductNotFound):
        normalize_lines([Line(product_id, 1)])


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 100)), min_size=1, max_size=30))
def test_normalize_lines_keeps_the_quantity_of_every_product(items: list[tuple[int, int]]) -> None:
    wanted: Counter[int] = Counter()
    for product_id, quantity in items:
        wanted[product_id] += quantity

    lines = normalize_lines(Line(p, q) for p, q in items)

    assert [line.product_id for line in lines] == sorted(wanted)
    assert {line.product_id: line.quantity for line in lines} == wanted


def test_total_cents() -> None:
    assert total_cents([]) == 0
    assert total_cents([PricedLine(MUG, 2, 250), PricedLine(PEN, 3, 99)]) == 797


# --- reservations ----------------------------------------------------------------------------------------------------


def test_reserve_takes_stock_and_prices_the_lines(inventory_conn: sqlite3.Connection) -> None:
    priced = reserve(inventory_conn, 7, (LAMP, 2), (MUG, 1), (MUG, 2))

    assert priced == [PricedLine(MUG, 3, 250), PricedLine(LAMP, 2, 1999)]
    assert Inventory(inventory_conn).lines(7) == priced
    assert Inventory(inventory_conn).reservation_status(7) == "HELD"
    assert stocks(inventory_conn) == {MUG: 7, LAMP: 1, PEN: 1}
    assert_stock_conserved(inventory_conn)


def test_reserve_keeps_the_price_of_the_moment(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 7, (MUG, 1))
    inventory_conn.execute("UPDATE products SET price_cents = 300 WHERE id = ?", (MUG,))

    assert Inventory(inventory_conn).lines(7) == [PricedLine(MUG, 1, 250)]
    assert reserve(inventory_conn, 8, (MUG, 1)) == [PricedLine(MUG, 1, 300)]


def test_reserve_the_last_units(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 7, (LAMP, 3), (PEN, 1))

    assert stocks(inventory_conn) == {MUG: 10, LAMP: 0, PEN: 0}


def test_reserve_twice_is_idempotent(inventory_conn: sqlite3.Connection) -> None:
    first = reserve(inventory_conn, 7, (MUG, 2))
    again = reserve(inventory_conn, 7, (MUG, 2))

    assert again == first
    assert stocks(inventory_conn)[MUG] == 8
    assert_stock_conserved(inventory_conn)


def test_reserve_again_answers_with_the_first_reservation(inventory_conn: sqlite3.Connection) -> None:
    # The key is the order id: a repeat is answered from the record, whatever lines it carries.
    first = reserve(inventory_conn, 7, (MUG, 2))

    assert reserve(inventory_conn, 7, (LAMP, 1)) == first
    assert stocks(inventory_conn) == {MUG: 8, LAMP: 3, PEN: 1}


def test_reserve_of_a_committed_order_answers_with_its_lines(inventory_conn: sqlite3.Connection) -> None:
    first = reserve(inventory_conn, 7, (MUG, 2))
    commit(inventory_conn, 7)

    assert reserve(inventory_conn, 7, (MUG, 2)) == first
    assert stocks(inventory_conn)[MUG] == 8


def test_out_of_stock_leaves_stock_unchanged_when_the_unit_of_work_rolls_back(
    inventory_conn: sqlite3.Connection,
) -> None:
    # MUG is taken before LAMP fails: only the rollback of the whole unit of work gives it back.
    with pytest.raises(OutOfStock):
        reserve(inventory_conn, 7, (MUG, 2), (LAMP, 4))

    assert stocks(inventory_conn) == {MUG: 10, LAMP: 3, PEN: 1}
    assert Inventory(inventory_conn).reservation_status(7) is None
    assert Inventory(inventory_conn).lines(7) == []
    assert_stock_conserved(inventory_conn)
    # The order id is still free: a smaller request goes through.
    assert reserve(inventory_conn, 7, (MUG, 2), (LAMP, 3))[1] == PricedLine(LAMP, 3, 1999)


def test_unknown_product_reserves_nothing(inventory_conn: sqlite3.Connection) -> None:
    with pytest.raises(ProductNotFound):
        reserve(inventory_conn, 7, (MUG, 1), (99, 1))

    assert stocks(inventory_conn)[MUG] == 10
    assert Inventory(inventory_conn).reservation_status(7) is None


def test_two_connections_never_oversell(inventory_conn: sqlite3.Connection, engine_db: OpenAny) -> None:
    other = engine_db()
    try:
        reserve(inventory_conn, 7, (LAMP, 2))
        with pytest.raises(OutOfStock):
            reserve(other, 8, (LAMP, 2))
        reserve(other, 8, (LAMP, 1))
    finally:
        other.close()

    assert stocks(inventory_conn)[LAMP] == 0
    assert_stock_conserved(inventory_conn)


def test_concurrent_reservations_of_the_last_unit(inventory_conn: sqlite3.Connection, engine_db: OpenAny) -> None:
    # Each buyer has its own connection and event loop; the one that finds the write lock taken (SQLite) waits for it,
    # the one whose transaction collides (PostgreSQL) runs it again.
    outcomes: list[str] = []
    start = threading.Barrier(2, timeout=10)
    opened = [engine_db(), engine_db()]

    async def reserve_waiting(conn: Connection, order_id: int) -> None:
        async for uow in transactions(conn):
            with uow:
                Inventory(conn).reserve(order_id, [Line(PEN, 1)])
                uow.commit()

    def buy_the_pen(order_id: int) -> None:
        conn = opened.pop()
        try:
            start.wait()
            asyncio.run(reserve_waiting(conn, order_id))
            outcomes.append("reserved")
        except OutOfStock:
            outcomes.append("out of stock")
        finally:
            conn.close()

    threads = [threading.Thread(target=buy_the_pen, args=(order_id,)) for order_id in (7, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["out of stock", "reserved"]
    assert stocks(inventory_conn)[PEN] == 0
    assert_stock_conserved(inventory_conn)


# --- transitions -----------------------------------------------------------------------------------------------------


def test_commit_turns_held_stock_into_a_sale(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 7, (MUG, 2))

    commit(inventory_conn, 7)
    commit(inventory_conn, 7)

    assert Inventory(inventory_conn).reservation_status(7) == "COMMITTED"
    assert stocks(inventory_conn)[MUG] == 8
    assert_stock_conserved(inventory_conn)


def test_commit_without_reservation_is_invalid(inventory_conn: sqlite3.Connection) -> None:
    with pytest.raises(InvalidState):
        commit(inventory_conn, 7)

    assert Inventory(inventory_conn).reservation_status(7) is None


def test_commit_after_release_is_cancelled(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 7, (MUG, 2))
    release(inventory_conn, 7)

    with pytest.raises(StepCancelled):
        commit(inventory_conn, 7)

    assert Inventory(inventory_conn).reservation_status(7) == "RELEASED"
    assert stocks(inventory_conn)[MUG] == 10


def test_release_gives_held_stock_back_once(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 7, (MUG, 2), (LAMP, 1))

    assert release(inventory_conn, 7) == "RELEASED"
    assert release(inventory_conn, 7) == "RELEASED"

    assert Inventory(inventory_conn).reservation_status(7) == "RELEASED"
    assert stocks(inventory_conn) == {MUG: 10, LAMP: 3, PEN: 1}
    assert_stock_conserved(inventory_conn)


def test_release_before_reserve_leaves_a_tombstone(inventory_conn: sqlite3.Connection) -> None:
    assert release(inventory_conn, 7) == "RELEASED"
    assert Inventory(inventory_conn).reservation_status(7) == "RELEASED"

    # The reservation call that timed out finally arrives after its compensation: it must take nothing.
    with pytest.raises(StepCancelled):
        reserve(inventory_conn, 7, (MUG, 2))

    assert stocks(inventory_conn) == {MUG: 10, LAMP: 3, PEN: 1}
    assert Inventory(inventory_conn).lines(7) == []
    assert_stock_conserved(inventory_conn)


def test_release_of_a_committed_reservation_is_invalid(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 7, (MUG, 2))
    commit(inventory_conn, 7)

    with pytest.raises(InvalidState):
        release(inventory_conn, 7)

    assert Inventory(inventory_conn).reservation_status(7) == "COMMITTED"
    assert stocks(inventory_conn)[MUG] == 8


def test_stock_is_conserved_through_a_mix_of_operations(inventory_conn: sqlite3.Connection) -> None:
    reserve(inventory_conn, 1, (MUG, 3), (LAMP, 1))
    reserve(inventory_conn, 2, (MUG, 2), (PEN, 1))
    commit(inventory_conn, 1)
    release(inventory_conn, 2)
    release(inventory_conn, 3)
    with pytest.raises(OutOfStock):
        reserve(inventory_conn, 4, (MUG, 1), (LAMP, 3))
    reserve(inventory_conn, 5, (LAMP, 2), (PEN, 1))
    reserve(inventory_conn, 5, (LAMP, 2), (PEN, 1))
    with pytest.raises(StepCancelled):
        reserve(inventory_conn, 3, (MUG, 1))

    assert stocks(inventory_conn) == {MUG: 7, LAMP: 0, PEN: 0}
    assert_stock_conserved(inventory_conn)


# One operation on an order: ("reserve", order, items) | ("commit", order) | ("release", order).
orders = st.integers(1, 5)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            orders,
            st.lists(st.tuples(st.sampled_from([MUG, LAMP, PEN, 4]), st.integers(1, 4)), min_size=1, max_size=3),
        ),
        st.tuples(st.sampled_from(["commit", "release"]), orders),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, database=None)
@given(operations)
def test_any_sequence_of_operations_conserves_stock(ops: list[tuple[object, ...]]) -> None:
    # An in-memory database per example: function-scoped fixtures are not reset between hypothesis examples.
    conn = connect(":memory:")
    try:
        create_schema(conn, inventory.SCHEMA)
        with UnitOfWork(conn) as uow:
            Inventory(conn).seed([("MUG", "Mug", 250, 10), ("LAMP", "Lamp", 1999, 3), ("PEN", "Pen", 99, 1)])
            uow.commit()
        for op in ops:
            with UnitOfWork(conn) as uow:
                try:
                    match op:
                        case ("reserve", int(order), list(items)):
                            Inventory(conn).reserve(order, [Line(p, q) for p, q in items])
                        case ("commit", int(order)):
                            Inventory(conn).commit(order)
                        case ("release", int(order)):
                            Inventory(conn).release(order)
                    uow.commit()
                except DomainError:
                    pass  # refused: the unit of work rolls back
            assert_stock_conserved(conn)
    finally:
        conn.close()

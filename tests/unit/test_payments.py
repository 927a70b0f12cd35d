"""Payments: deposits, charges and refunds keyed by order id, and the ledger they keep.

Ledger invariant checked throughout: for every user, deposits = balance + money held by CHARGED charges.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shop import payments
from shop.db import UnitOfWork, connect, create_schema
from shop.errors import DomainError, IdempotencyKeyReused, InsufficientFunds, InvalidInput, StepCancelled
from shop.payments import MAX_BALANCE, MAX_DEPOSIT, Charge, Payments

ANN, BOB = 1, 2


def deposit(conn: sqlite3.Connection, user_id: int, amount: int) -> int:
    with UnitOfWork(conn) as uow:
        balance = Payments(conn).deposit(user_id, amount)
        uow.commit()
    return balance


def charge(conn: sqlite3.Connection, order_id: int, user_id: int, amount: int) -> Charge:
    with UnitOfWork(conn) as uow:
        done = Payments(conn).charge(order_id, user_id, amount)
        uow.commit()
    return done


def refund(conn: sqlite3.Connection, order_id: int) -> str:
    with UnitOfWork(conn) as uow:
        status = Payments(conn).refund(order_id)
        uow.commit()
    return status


def assert_ledger_balances(conn: sqlite3.Connection, user_id: int) -> None:
    (deposited,) = conn.execute(
        "SELECT COALESCE(SUM(amount_cents), 0) FROM deposits WHERE user_id = ?", (user_id,)
    ).fetchone()
    (held,) = conn.execute(
        "SELECT COALESCE(SUM(amount_cents), 0) FROM charges WHERE user_id = ? AND status = 'CHARGED'", (user_id,)
    ).fetchone()
    balance = Payments(conn).balance(user_id)
    assert balance >= 0
    assert deposited == balance + held


def test_balance_without_wallet_is_zero(payments_conn: sqlite3.Connection) -> None:
    assert Payments(payments_conn).balance(ANN) == 0


def test_deposits_add_up(payments_conn: sqlite3.Connection) -> None:
    assert deposit(payments_conn, ANN, 500) == 500
    assert deposit(payments_conn, ANN, 1) == 501
    assert deposit(payments_conn, BOB, MAX_DEPOSIT) == MAX_DEPOSIT

    assert Payments(payments_conn).balance(ANN) == 501
    assert_ledger_balances(payments_conn, ANN)
    assert_ledger_balances(payments_conn, BOB)


@pytest.mark.parametrize("amount", [0, -1, -MAX_DEPOSIT, MAX_DEPOSIT + 1])
def test_deposit_out_of_bounds_is_refused(payments_conn: sqlite3.Connection, amount: int) -> None:
    deposit(payments_conn, ANN, 100)

    with pytest.raises(InvalidInput):
        deposit(payments_conn, ANN, amount)

    assert Payments(payments_conn).balance(ANN) == 100
    assert_ledger_balances(payments_conn, ANN)


def test_balance_cap(payments_conn: sqlite3.Connection) -> None:
    # Reaching the real cap through deposits would take a million of them; start the wallet just under it instead.
    payments_conn.execute("INSERT INTO wallets (user_id, balance_cents) VALUES (?, ?)", (ANN, MAX_BALANCE - 1))

    assert deposit(payments_conn, ANN, 1) == MAX_BALANCE
    with pytest.raises(InvalidInput):
        deposit(payments_conn, ANN, 1)

    assert Payments(payments_conn).balance(ANN) == MAX_BALANCE
    (deposits,) = payments_conn.execute("SELECT COUNT(*) FROM deposits").fetchone()
    assert deposits == 1


def test_charge_takes_money(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 1000)

    done = charge(payments_conn, 7, ANN, 300)

    assert done == Charge(7, ANN, 300, "CHARGED")
    assert Payments(payments_conn).get_charge(7) == done
    assert Payments(payments_conn).balance(ANN) == 700
    assert_ledger_balances(payments_conn, ANN)


def test_charge_of_the_whole_balance(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 300)

    charge(payments_conn, 7, ANN, 300)

    assert Payments(payments_conn).balance(ANN) == 0


@pytest.mark.parametrize(("funds", "amount"), [(0, 1), (299, 300)])
def test_insufficient_funds_takes_nothing(payments_conn: sqlite3.Connection, funds: int, amount: int) -> None:
    if funds:
        deposit(payments_conn, ANN, funds)

    with pytest.raises(InsufficientFunds):
        charge(payments_conn, 7, ANN, amount)

    assert Payments(payments_conn).balance(ANN) == funds
    assert Payments(payments_conn).get_charge(7) is None


def test_charge_pays_from_the_right_wallet(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, BOB, 1000)

    with pytest.raises(InsufficientFunds):
        charge(payments_conn, 7, ANN, 300)

    assert Payments(payments_conn).balance(BOB) == 1000


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_charge_is_refused(payments_conn: sqlite3.Connection, amount: int) -> None:
    deposit(payments_conn, ANN, 1000)

    with pytest.raises(InvalidInput):
        charge(payments_conn, 7, ANN, amount)

    assert Payments(payments_conn).balance(ANN) == 1000


def test_repeated_charge_returns_the_first_and_takes_money_once(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 1000)

    first = charge(payments_conn, 7, ANN, 300)
    again = charge(payments_conn, 7, ANN, 300)

    assert again == first
    assert Payments(payments_conn).balance(ANN) == 700
    (rows,) = payments_conn.execute("SELECT COUNT(*) FROM charges").fetchone()
    assert rows == 1


def test_repeated_charge_is_accepted_even_when_the_wallet_is_now_empty(payments_conn: sqlite3.Connection) -> None:
    # The retry of a call that timed out must not be refused because the first attempt already took the money.
    deposit(payments_conn, ANN, 300)
    charge(payments_conn, 7, ANN, 300)

    assert charge(payments_conn, 7, ANN, 300).status == "CHARGED"
    assert Payments(payments_conn).balance(ANN) == 0


@pytest.mark.parametrize(("user_id", "amount"), [(ANN, 301), (BOB, 300)])
def test_same_order_with_other_parameters_is_refused(
    payments_conn: sqlite3.Connection, user_id: int, amount: int
) -> None:
    deposit(payments_conn, ANN, 1000)
    deposit(payments_conn, BOB, 1000)
    charge(payments_conn, 7, ANN, 300)

    with pytest.raises(IdempotencyKeyReused):
        charge(payments_conn, 7, user_id, amount)

    assert Payments(payments_conn).balance(ANN) == 700
    assert Payments(payments_conn).balance(BOB) == 1000
    assert Payments(payments_conn).get_charge(7) == Charge(7, ANN, 300, "CHARGED")


def test_refund_gives_money_back_once(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 1000)
    charge(payments_conn, 7, ANN, 300)

    assert refund(payments_conn, 7) == "REFUNDED"
    assert refund(payments_conn, 7) == "REFUNDED"

    assert Payments(payments_conn).balance(ANN) == 1000
    assert Payments(payments_conn).get_charge(7) == Charge(7, ANN, 300, "REFUNDED")
    assert_ledger_balances(payments_conn, ANN)


def test_charge_after_its_refund_is_cancelled(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 1000)
    charge(payments_conn, 7, ANN, 300)
    refund(payments_conn, 7)

    with pytest.raises(StepCancelled):
        charge(payments_conn, 7, ANN, 300)

    assert Payments(payments_conn).balance(ANN) == 1000


def test_refund_before_charge_leaves_a_void_tombstone(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 1000)

    assert refund(payments_conn, 7) == "VOID"
    assert refund(payments_conn, 7) == "VOID"
    tombstone = Payments(payments_conn).get_charge(7)
    assert tombstone is not None
    assert (tombstone.status, tombstone.amount_cents) == ("VOID", 0)

    # The charge call that timed out finally arrives, after the orchestrator compensated: it must take nothing.
    with pytest.raises(StepCancelled):
        charge(payments_conn, 7, ANN, 300)

    assert Payments(payments_conn).balance(ANN) == 1000
    assert_ledger_balances(payments_conn, ANN)


def test_refund_of_one_order_leaves_the_others(payments_conn: sqlite3.Connection) -> None:
    deposit(payments_conn, ANN, 1000)
    charge(payments_conn, 7, ANN, 300)
    charge(payments_conn, 8, ANN, 200)

    refund(payments_conn, 7)

    assert Payments(payments_conn).balance(ANN) == 800
    charge_8 = Payments(payments_conn).get_charge(8)
    assert charge_8 is not None
    assert charge_8.status == "CHARGED"


def test_seed_funds_through_deposits(payments_conn: sqlite3.Connection) -> None:
    with UnitOfWork(payments_conn) as uow:
        Payments(payments_conn).seed([1, 2, 3], 5000)
        uow.commit()

    for user_id in (1, 2, 3):
        assert Payments(payments_conn).balance(user_id) == 5000
        assert_ledger_balances(payments_conn, user_id)


# One operation: ("deposit", user, amount) | ("charge", order, user, amount) | ("refund", order).
operations = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.sampled_from([ANN, BOB]), st.integers(-5, 500)),
        st.tuples(st.just("charge"), st.integers(1, 6), st.sampled_from([ANN, BOB]), st.integers(-5, 500)),
        st.tuples(st.just("refund"), st.integers(1, 6)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, database=None)
@given(operations)
def test_any_sequence_of_operations_keeps_the_ledger(ops: list[tuple[object, ...]]) -> None:
    # An in-memory database per example: function-scoped fixtures are not reset between hypothesis examples.
    conn = connect(":memory:")
    try:
        create_schema(conn, payments.SCHEMA)
        for op in ops:
            with UnitOfWork(conn) as uow:
                try:
                    match op:
                        case ("deposit", int(user), int(amount)):
                            Payments(conn).deposit(user, amount)
                        case ("charge", int(order), int(user), int(amount)):
                            Payments(conn).charge(order, user, amount)
                        case ("refund", int(order)):
                            Payments(conn).refund(order)
                    uow.commit()
                except DomainError:
                    pass  # refused: the unit of work rolls back
            assert_ledger_balances(conn, ANN)
            assert_ledger_balances(conn, BOB)
    finally:
        conn.close()


# --- deposits with an idempotency key --------------------------------------------------------------------------------


def keyed_deposit(conn: sqlite3.Connection, user_id: int, amount: int, key: str | None) -> int:
    with UnitOfWork(conn) as uow:
        balance = Payments(conn).deposit(user_id, amount, key)
        uow.commit()
    return balance


def deposit_rows(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM deposits").fetchone()
    return int(n)


def test_a_keyed_deposit_credits_once_and_replays_its_answer(payments_conn: sqlite3.Connection) -> None:
    assert keyed_deposit(payments_conn, ANN, 500, "d1") == 500
    deposit(payments_conn, ANN, 100)  # the balance moves on after the first answer

    assert keyed_deposit(payments_conn, ANN, 500, "d1") == 500  # the same answer, not the balance of now
    assert Payments(payments_conn).balance(ANN) == 600
    assert deposit_rows(payments_conn) == 2
    assert_ledger_balances(payments_conn, ANN)


def test_a_key_reused_for_another_amount_is_refused(payments_conn: sqlite3.Connection) -> None:
    keyed_deposit(payments_conn, ANN, 500, "d1")

    with pytest.raises(IdempotencyKeyReused):
        keyed_deposit(payments_conn, ANN, 501, "d1")

    assert Payments(payments_conn).balance(ANN) == 500
    assert deposit_rows(payments_conn) == 1


def test_deposit_keys_are_the_users_own(payments_conn: sqlite3.Connection) -> None:
    assert keyed_deposit(payments_conn, ANN, 500, "d1") == 500

    assert keyed_deposit(payments_conn, BOB, 700, "d1") == 700
    assert keyed_deposit(payments_conn, BOB, 700, "d1") == 700

    assert Payments(payments_conn).balance(ANN) == 500
    assert Payments(payments_conn).balance(BOB) == 700
    assert_ledger_balances(payments_conn, ANN)
    assert_ledger_balances(payments_conn, BOB)


def test_deposits_without_a_key_each_credit(payments_conn: sqlite3.Connection) -> None:
    assert keyed_deposit(payments_conn, ANN, 500, None) == 500
    assert keyed_deposit(payments_conn, ANN, 500, None) == 1000


def test_a_refused_keyed_deposit_records_nothing(payments_conn: sqlite3.Connection) -> None:
    # Refused for the cap: nothing is kept under the key, so the same key may be used once the wallet has room.
    payments_conn.execute("INSERT INTO wallets (user_id, balance_cents) VALUES (?, ?)", (ANN, MAX_BALANCE))

    with pytest.raises(InvalidInput):
        keyed_deposit(payments_conn, ANN, 1, "d1")

    assert deposit_rows(payments_conn) == 0


@pytest.mark.parametrize("key", ["", " lead", "trail ", "x" * 256, "clé", "line\nbreak"])
def test_a_malformed_deposit_key_is_refused(payments_conn: sqlite3.Connection, key: str) -> None:
    with pytest.raises(InvalidInput):
        keyed_deposit(payments_conn, ANN, 500, key)

    assert deposit_rows(payments_conn) == 0


def test_the_database_refuses_a_second_deposit_under_one_key(payments_conn: sqlite3.Connection) -> None:
    # The last guard under the look-up in deposit(): the unique index of (user, key).
    keyed_deposit(payments_conn, ANN, 500, "d1")

    refusal = sqlite3.IntegrityError if payments_conn.engine == "sqlite" else psycopg.IntegrityError
    with pytest.raises(refusal):
        payments_conn.execute(
            "INSERT INTO deposits (user_id, amount_cents, idempotency_key, balance_after_cents) VALUES (?, 5, ?, 5)",
            (ANN, "d1"),
        )


# Keyed deposits, replays and plain deposits in any order: one credit per (user, key), the ledger holds, and a replay
# answers what the first deposit under its key answered.
keyed_operations = st.lists(
    st.tuples(st.sampled_from([ANN, BOB]), st.integers(1, 3), st.sampled_from([None, "a", "b", "c"])), max_size=30
)


@settings(max_examples=60, deadline=None, database=None)
@given(keyed_operations)
def test_keyed_deposits_credit_once_per_user_and_key(ops: list[tuple[int, int, str | None]]) -> None:
    conn = connect(":memory:")
    try:
        create_schema(conn, payments.SCHEMA)
        first: dict[tuple[int, str], tuple[int, int]] = {}  # (user, key) -> (amount, answer)
        credited = {ANN: 0, BOB: 0}
        for user, amount, key in ops:
            if key is not None and (user, key) in first and first[user, key][0] != amount:
                with pytest.raises(IdempotencyKeyReused):
                    keyed_deposit(conn, user, amount, key)
                continue
            answer = keyed_deposit(conn, user, amount, key)
            if key is not None and (user, key) in first:
                assert answer == first[user, key][1]
                continue
            credited[user] += amount
            assert answer == credited[user]
            if key is not None:
                first[user, key] = (amount, answer)
        for user in (ANN, BOB):
            assert Payments(conn).balance(user) == credited[user]
            assert_ledger_balances(conn, user)
    finally:
        conn.close()

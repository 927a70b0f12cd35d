"""Payments: wallets, deposits, and charges keyed by order id.

A charge and its refund are saga steps: both are idempotent for a given order id, and a refund that arrives before the
charge it cancels (the charge call timed out, the orchestrator compensated, then the charge finally ran) leaves a VOID
tombstone so that the late charge is refused instead of taking money for a rejected order.

A deposit may carry an idempotency key, the user's own (as payment APIs scope keys per account): a retry under the
same key credits nothing more and answers the balance the first deposit answered; the same key with another amount is
refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shop.connection import Connection
from shop.db import add_columns
from shop.errors import IdempotencyKeyReused, InsufficientFunds, InvalidInput, StepCancelled
from shop.orders import check_optional_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS wallets (
    user_id INTEGER PRIMARY KEY,
    balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0)
);
CREATE TABLE IF NOT EXISTS deposits (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    idempotency_key TEXT,
    balance_after_cents INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS deposits_user_key ON deposits (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS charges (
    order_id INTEGER PRIMARY KEY,
    user_id INTEGER,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('CHARGED', 'REFUNDED', 'VOID'))
);
"""

MAX_DEPOSIT = 10**9
MAX_BALANCE = 10**15

# Added to databases created before deposits took a key (CREATE TABLE IF NOT EXISTS leaves an existing table as it is).
DEPOSIT_KEY_COLUMNS = {"deposits": (("idempotency_key", "TEXT"), ("balance_after_cents", "INTEGER"))}


def upgrade(conn: Connection) -> None:
    """Bring a payments database made by an earlier version to this schema (idempotent): the deposits' key columns.
    Run it before :func:`~shop.db.create_schema`, whose index on them would otherwise name missing columns. SQLite
    only (see :func:`shop.db.add_columns`)."""
    add_columns(conn, DEPOSIT_KEY_COLUMNS)


@dataclass(frozen=True, slots=True)
class Charge:
    order_id: int
    user_id: int
    amount_cents: int
    status: str


class Payments:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def balance(self, user_id: int) -> int:
        row = self.conn.execute("SELECT balance_cents FROM wallets WHERE user_id = ?", (user_id,)).fetchone()
        return int(row[0]) if row else 0

    def deposit(self, user_id: int, amount_cents: int, key: str | None = None) -> int:
        """Add ``amount_cents`` to the wallet and return the new balance.

        With ``key`` (an Idempotency-Key), once per user and key: a deposit already made under it is not made again,
        and its answer, the balance it returned then, is returned again; another amount under it is refused.
        """
        if not 1 <= amount_cents <= MAX_DEPOSIT:
            raise InvalidInput(f"amount_cents must be between 1 and {MAX_DEPOSIT}")
        key = check_optional_key(key)
        if key is not None:
            row = self.conn.execute(
                "SELECT amount_cents, balance_after_cents FROM deposits WHERE user_id = ? AND idempotency_key = ?",
                (user_id, key),
            ).fetchone()
            if row is not None:
                if row[0] != amount_cents:
                    raise IdempotencyKeyReused("this Idempotency-Key was used for a different deposit")
                return int(row[1])
        balance = self.balance(user_id) + amount_cents
        if balance > MAX_BALANCE:
            raise InvalidInput(f"a wallet holds at most {MAX_BALANCE} cents")
        self.conn.execute(
            "INSERT INTO deposits (user_id, amount_cents, idempotency_key, balance_after_cents) VALUES (?, ?, ?, ?)",
            (user_id, amount_cents, key, balance),
        )
        self.conn.execute(
            "INSERT INTO wallets (user_id, balance_cents) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET balance_cents = excluded.balance_cents",
            (user_id, balance),
        )
        return balance

    def charge(self, order_id: int, user_id: int, amount_cents: int) -> Charge:
        """Take ``amount_cents`` for ``order_id``; charging the same order again returns the first charge."""
        row = self.conn.execute(
            "SELECT user_id, amount_cents, status FROM charges WHERE order_id = ?", (order_id,)
        ).fetchone()
        if row is not None:
            if row[2] != "CHARGED":
                raise StepCancelled(f"order {order_id} was already refunded or voided")
            if (row[0], row[1]) != (user_id, amount_cents):
                raise IdempotencyKeyReused(f"order {order_id} was charged with other parameters")
            return Charge(order_id, user_id, amount_cents, "CHARGED")
        if amount_cents < 1:
            raise InvalidInput("amount_cents must be positive")
        cur = self.conn.execute(
            "UPDATE wallets SET balance_cents = balance_cents - ? WHERE user_id = ? AND balance_cents >= ?",
            (amount_cents, user_id, amount_cents),
        )
        if cur.rowcount != 1:
            raise InsufficientFunds(f"user {user_id} cannot pay {amount_cents} cents")
        self.conn.execute(
            "INSERT INTO charges (order_id, user_id, amount_cents, status) VALUES (?, ?, ?, 'CHARGED')",
            (order_id, user_id, amount_cents),
        )
        return Charge(order_id, user_id, amount_cents, "CHARGED")

    def refund(self, order_id: int) -> str:
        """Give back the charge of ``order_id`` (idempotent); with no charge yet, void it. Returns the final status."""
        row = self.conn.execute(
            "SELECT user_id, amount_cents, status FROM charges WHERE order_id = ?", (order_id,)
        ).fetchone()
        if row is None:
            self.conn.execute(
                "INSERT INTO charges (order_id, user_id, amount_cents, status) VALUES (?, NULL, 0, 'VOID')",
                (order_id,),
            )
            return "VOID"
        user_id, amount, status = row
        if status == "CHARGED":
            self.conn.execute(
                "UPDATE wallets SET balance_cents = balance_cents + ? WHERE user_id = ?", (amount, user_id)
            )
            self.conn.execute("UPDATE charges SET status = 'REFUNDED' WHERE order_id = ?", (order_id,))
            return "REFUNDED"
        return str(status)

    def get_charge(self, order_id: int) -> Charge | None:
        row = self.conn.execute(
            "SELECT order_id, user_id, amount_cents, status FROM charges WHERE order_id = ?", (order_id,)
        ).fetchone()
        return Charge(*row) if row else None

    def seed(self, user_ids: Iterable[int], amount_cents: int) -> None:
        """Fund seeded users through real deposits, so that the ledger invariant holds from the start."""
        for user_id in user_ids:
            self.deposit(user_id, amount_cents)

"""The orders service's checkout: an orchestrated saga with a durable log, idempotent steps and compensations.

Compare with ``monolith/checkout.py``, where one transaction gives all-or-nothing for free. Here:

1. the order is recorded PENDING in the orders database (the saga log) before any remote step;
2. users (validate), inventory (reserve, keyed by order id) and payments (charge, keyed by order id) are called;
3. once the charge is known to have succeeded, ``step = charged`` is logged, the reservation committed, and the order
   CONFIRMED with its outbox row in one local transaction;
4. on a business refusal, or when a step's outcome is unknown (timeout, refused connection, 5xx), the steps are
   compensated: stock released, then the charge refunded (or voided if it never ran), and the order REJECTED.

Every step is idempotent because a call that timed out may still have run. Release goes before refund: a committed
reservation makes the release fail, so a charge is never refunded for an order that is being confirmed. Whatever stays
PENDING (a crash, a compensation that could not be delivered) is finished by :meth:`Saga.recover`: forward when the
charge was logged, backward otherwise.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

from microservices.api import InventoryClient, PaymentsClient, UsersClient
from plumbing.client import RemoteCallError
from shop.db import UnitOfWork
from shop.errors import BY_CODE, DomainError, OrderInProgress, Unavailable
from shop.inventory import Line, PricedLine, normalize_lines, total_cents
from shop.orders import Order, Orders, check_key, fingerprint

log = logging.getLogger(__name__)

# What makes a step's outcome unknown: the call may or may not have run on the other side.
UNKNOWN_OUTCOME = (RemoteCallError, Unavailable)


class Saga:
    def __init__(
        self,
        conn: sqlite3.Connection,
        users: UsersClient,
        inventory: InventoryClient,
        payments: PaymentsClient,
        on_confirmed: Callable[[], None] = lambda: None,
    ) -> None:
        self.conn = conn
        self.orders = Orders(conn)
        self.users = users
        self.inventory = inventory
        self.payments = payments
        self.on_confirmed = on_confirmed
        self.in_flight: set[int] = set()

    async def checkout(self, user_id: int, items: Sequence[Line], key: str | None) -> tuple[Order, bool]:
        """Run the checkout saga; returns the order and whether it is new. Raises the refusal, or Unavailable."""
        key = check_key(key)
        lines = normalize_lines(items)
        print_ = fingerprint(user_id, lines)
        async with UnitOfWork(self.conn) as uow:
            existing = self.orders.find_by_key(key, print_)
            if existing is None:
                order_id = self.orders.create(user_id, key, print_, lines)
                uow.commit()
        if existing is not None:
            return replay(existing), False
        self.in_flight.add(order_id)
        try:
            await self._forward(order_id, user_id, lines)
        finally:
            self.in_flight.discard(order_id)
        return self.orders.get(order_id), True

    async def _forward(self, order_id: int, user_id: int, lines: Sequence[Line]) -> None:
        try:
            await self.users.get_user(user_id)
            priced = await self.inventory.reserve(order_id, lines)
            await self.payments.charge(order_id, user_id, total_cents(priced))
        except UNKNOWN_OUTCOME as exc:
            await self._compensate_or_leave(order_id, Unavailable.code)
            raise Unavailable(f"checkout of order {order_id} failed: {exc}") from exc
        except DomainError as refusal:
            await self._compensate_or_leave(order_id, refusal.code)
            raise
        await self._log_step(order_id, "charged")
        try:
            await self._confirm(order_id, user_id, priced)
        except UNKNOWN_OUTCOME as exc:
            # The money is taken: the order can only go forward, and recovery will confirm it.
            raise Unavailable(f"order {order_id} is paid and will be confirmed when inventory answers") from exc

    async def _confirm(self, order_id: int, user_id: int, priced: Sequence[PricedLine]) -> None:
        await self.inventory.commit(order_id)
        async with UnitOfWork(self.conn) as uow:
            self.orders.confirm(order_id, user_id, priced)
            uow.commit()
        self.on_confirmed()

    async def _compensate(self, order_id: int, reason: str) -> None:
        async with UnitOfWork(self.conn) as uow:
            self.orders.mark_compensating(order_id, reason)
            uow.commit()
        await self.inventory.release(order_id)
        await self.payments.refund(order_id)
        async with UnitOfWork(self.conn) as uow:
            self.orders.reject(order_id, reason)
            uow.commit()

    async def _compensate_or_leave(self, order_id: int, reason: str) -> None:
        """Compensate now if possible; otherwise the order stays PENDING and recovery compensates it later."""
        try:
            await self._compensate(order_id, reason)
        except (*UNKNOWN_OUTCOME, DomainError) as exc:
            log.warning("compensation of order %s deferred to recovery: %r", order_id, exc)

    async def _log_step(self, order_id: int, step: str) -> None:
        async with UnitOfWork(self.conn) as uow:
            self.orders.record_step(order_id, step)
            uow.commit()

    async def recover(self, stale_after: float = 0.0) -> int:
        """Finish or compensate every PENDING order untouched for ``stale_after`` seconds; returns how many ended."""
        ended = 0
        for order_id in self.orders.pending(stale_after):
            if order_id in self.in_flight:
                continue
            self.in_flight.add(order_id)
            try:
                await self._recover_one(self.orders.get(order_id))
                ended += 1
            except (*UNKNOWN_OUTCOME, DomainError) as exc:
                log.info("recovery of order %s will be retried: %r", order_id, exc)
            finally:
                self.in_flight.discard(order_id)
        return ended

    async def _recover_one(self, order: Order) -> None:
        if order.step == "charged":
            # Re-reserving is idempotent and returns the lines held at the original prices.
            priced = await self.inventory.reserve(order.id, order.requested())
            await self._confirm(order.id, order.user_id, priced)
            log.info("recovered order %s forward (CONFIRMED)", order.id)
        else:
            await self._compensate(order.id, order.reason or "recovered")
            log.info("recovered order %s backward (REJECTED)", order.id)


def replay(order: Order) -> Order:
    """The answer to a repeated Idempotency-Key: the same order, or the same refusal."""
    if order.status == "CONFIRMED":
        return order
    if order.status == "PENDING":
        raise OrderInProgress(f"order {order.id} with this Idempotency-Key is still being processed")
    cls = BY_CODE.get(order.reason or "", DomainError)
    raise cls(f"order {order.id} with this Idempotency-Key was rejected ({order.reason})")

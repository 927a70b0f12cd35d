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

The log may be shared by several coordinators (replicas of orders). Each order is owned by the coordinator driving it,
under a lease it renews (:meth:`Saga.renew`) while the order is in its hands; recovery takes over only orders whose
lease ran out, that nobody owns, or that a previous life of the same process owned (it crashed or was stopped), never
an order a sibling is still driving. See docs/operations.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from microservices.api import InventoryClient, PaymentsClient, UsersClient
from plumbing.transports import RemoteCallError
from shop.connection import Connection
from shop.db import transactions
from shop.errors import BY_CODE, DomainError, OrderInProgress, Unavailable
from shop.inventory import Line, PricedLine, normalize_lines, total_cents
from shop.orders import Order, Orders, Owner, check_key, fingerprint

log = logging.getLogger(__name__)

# What makes a step's outcome unknown: the call may or may not have run on the other side.
UNKNOWN_OUTCOME = (RemoteCallError, Unavailable)


class Saga:
    def __init__(
        self,
        conn: Connection,
        users: UsersClient,
        inventory: InventoryClient,
        payments: PaymentsClient,
        on_confirmed: Callable[[], None] = lambda: None,
        *,
        owner: Owner | None = None,
        lease: float = 10.0,
    ) -> None:
        self.conn = conn
        self.orders = Orders(conn)
        self.users = users
        self.inventory = inventory
        self.payments = payments
        self.on_confirmed = on_confirmed
        self.owner = owner or Owner.new("orders")
        self.lease = lease
        self.in_flight: set[int] = set()  # orders this coordinator is driving now (their leases are renewed)

    async def checkout(self, user_id: int, items: Sequence[Line], key: str | None) -> tuple[Order, bool]:
        """Run the checkout saga; returns the order and whether it is new. Raises the refusal, or Unavailable."""
        key = check_key(key)
        lines = normalize_lines(items)
        print_ = fingerprint(user_id, lines)
        async for uow in transactions(self.conn):
            with uow:
                existing = self.orders.find_by_key(user_id, key, print_)
                if existing is None:
                    order_id = self.orders.create(user_id, key, print_, lines, self.owner.id, time.time() + self.lease)
                    uow.commit()
        if existing is not None:
            return replay(existing), False
        self.in_flight.add(order_id)  # after the block, which may run more than once
        try:
            await self._forward(order_id, user_id, lines)
        finally:
            await self._let_go(order_id)
        return self.orders.get(order_id), True

    async def _let_go(self, order_id: int) -> None:
        """Stop driving an order; if it is still PENDING, recovery (here or in a sibling) may take it at once."""
        self.in_flight.discard(order_id)
        try:
            async for uow in transactions(self.conn):
                with uow:
                    self.orders.release(order_id, self.owner)
                    uow.commit()
        except Unavailable as exc:  # the lease runs out by itself; only the early hand-over is lost
            log.info("could not release order %s early: %s", order_id, exc)

    async def renew(self) -> int:
        """Extend the leases of the orders this coordinator is driving; returns how many."""
        if not self.in_flight:
            return 0
        async for uow in transactions(self.conn):
            with uow:
                renewed = self.orders.renew(self.owner, sorted(self.in_flight), time.time() + self.lease)
                uow.commit()
        return renewed

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
        async for uow in transactions(self.conn):
            with uow:
                self.orders.confirm(order_id, user_id, priced)
                uow.commit()
        self.on_confirmed()

    async def _compensate(self, order_id: int, reason: str) -> None:
        async for uow in transactions(self.conn):
            with uow:
                self.orders.mark_compensating(order_id, reason)
                uow.commit()
        await self.inventory.release(order_id)
        await self.payments.refund(order_id)
        async for uow in transactions(self.conn):
            with uow:
                self.orders.reject(order_id, reason)
                uow.commit()

    async def _compensate_or_leave(self, order_id: int, reason: str) -> None:
        """Compensate now if possible; otherwise the order stays PENDING and recovery compensates it later."""
        try:
            await self._compensate(order_id, reason)
        except (*UNKNOWN_OUTCOME, DomainError) as exc:
            log.warning("compensation of order %s deferred to recovery: %r", order_id, exc)

    async def _log_step(self, order_id: int, step: str) -> None:
        async for uow in transactions(self.conn):
            with uow:
                self.orders.record_step(order_id, step)
                uow.commit()

    async def recover(self) -> int:
        """Finish or compensate every PENDING order no live coordinator drives; returns how many ended.

        Each order is claimed first (atomically: of two coordinators recovering at once, one gets it), so an order
        whose owner still holds its lease (a checkout in flight in a sibling replica) is left alone.
        """
        ended = 0
        for order_id in self.orders.claimable(self.owner, time.time()):
            if order_id in self.in_flight or not await self._claim(order_id):
                continue
            try:
                await self._recover_one(self.orders.get(order_id))
                ended += 1
            except (*UNKNOWN_OUTCOME, DomainError) as exc:
                log.info("recovery of order %s will be retried: %r", order_id, exc)
            finally:
                await self._let_go(order_id)
        return ended

    async def _claim(self, order_id: int) -> bool:
        async for uow in transactions(self.conn):
            with uow:
                now = time.time()
                claimed = self.orders.claim(order_id, self.owner, now, now + self.lease)
                uow.commit()
        if claimed:  # only once the claim is committed: an attempt that conflicted claimed nothing
            self.in_flight.add(order_id)
        return claimed

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

"""The outbox relay: delivers queued notifications until each is delivered, in both topologies.

The order and its outbox row are committed together; this loop then hands each row to ``deliver`` and marks it
delivered. A crash between delivery and marking re-delivers, so the receiving side de-duplicates by key.

Every replica of orders and every worker of the monolith runs a relay over the same table. A relay first claims the
rows it will hand over (one atomic UPDATE: rows nobody holds, or whose claim ran out, or held by a previous life of
the same process), so that two relays never hand over the same row. A claim lasts ``lease`` seconds; a relay stops
handing over a batch once half of it is spent, and gives the rest back, so a row is never handed over by a relay whose
claim may already have passed to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from shop.connection import Connection
from shop.db import DATABASE_ERRORS, transactions
from shop.orders import Orders, OutboxItem, Owner

log = logging.getLogger(__name__)

Deliver = Callable[[OutboxItem], Awaitable[None]]


class OutboxRelay:
    def __init__(
        self,
        conn: Connection,
        deliver: Deliver,
        *,
        owner: Owner | None = None,
        lease: float = 10.0,
        batch: int = 32,
        poll: float = 0.25,
        max_backoff: float = 2.0,
    ):
        self.conn = conn
        self.deliver = deliver
        self.owner = owner or Owner.new("relay")
        self.lease = lease
        self.batch = batch
        self.poll = poll
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self._more = False  # the last claim was a full batch: there may be more rows waiting

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _claim(self) -> tuple[list[OutboxItem], float]:
        async for uow in transactions(self.conn):
            with uow:
                now = time.time()
                items = Orders(self.conn).claim_undelivered(self.owner, now, now + self.lease, self.batch)
                uow.commit()
        return items, time.monotonic() + self.lease / 2

    async def drain_once(self) -> int:
        """Claim undelivered rows and try each once; returns how many failed (or were given back unsent)."""
        items, give_up_at = await self._claim()
        self._more = len(items) == self.batch
        failed = 0
        for index, item in enumerate(items):
            if time.monotonic() >= give_up_at:  # the claim is half spent: give the rest back, claim again later
                async for uow in transactions(self.conn):
                    with uow:
                        for rest in items[index:]:
                            Orders(self.conn).unclaim(rest.id, self.owner)
                        uow.commit()
                return failed + len(items) - index
            try:
                await self.deliver(item)
            except Exception as exc:  # any failure of the receiver: keep the row and retry later
                log.debug("delivery of outbox row %s failed: %r", item.id, exc)
                async for uow in transactions(self.conn):
                    with uow:
                        Orders(self.conn).mark_attempt(item.id)
                        uow.commit()
                failed += 1
                continue
            async for uow in transactions(self.conn):
                with uow:
                    Orders(self.conn).mark_delivered(item.id)
                    uow.commit()
            self.delivered += 1
        return failed

    async def _run(self) -> None:
        backoff = self.poll
        while True:
            self._wake.clear()
            try:
                failed = await self.drain_once()
            except DATABASE_ERRORS:  # the database was locked past the wait, or failed: try later
                log.exception("outbox relay pass failed")
                failed = 1
            backoff = min(backoff * 2, self.max_backoff) if failed else self.poll
            if failed:
                await asyncio.sleep(backoff)
                continue
            if self._more:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()

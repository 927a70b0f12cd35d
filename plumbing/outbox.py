"""The outbox relay: delivers queued notifications until each is delivered, in both topologies.

The order and its outbox row are committed together; this loop then hands each row to ``deliver`` and marks it
delivered. A crash between delivery and marking re-delivers, so the receiving side de-duplicates by key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from shop.db import UnitOfWork
from shop.orders import Orders, OutboxItem

log = logging.getLogger(__name__)

Deliver = Callable[[OutboxItem], Awaitable[None]]


class OutboxRelay:
    def __init__(self, conn: sqlite3.Connection, deliver: Deliver, *, poll: float = 0.25, max_backoff: float = 2.0):
        self.conn = conn
        self.deliver = deliver
        self.poll = poll
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

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

    async def drain_once(self) -> int:
        """Try every undelivered row once; returns how many failed."""
        failed = 0
        for item in Orders(self.conn).undelivered():
            try:
                await self.deliver(item)
            except Exception as exc:  # any failure of the receiver: keep the row and retry later
                log.debug("delivery of outbox row %s failed: %r", item.id, exc)
                async with UnitOfWork(self.conn) as uow:
                    Orders(self.conn).mark_attempt(item.id)
                    uow.commit()
                failed += 1
                continue
            async with UnitOfWork(self.conn) as uow:
                Orders(self.conn).mark_delivered(item.id)
                uow.commit()
            self.delivered += 1
        return failed

    async def _run(self) -> None:
        backoff = self.poll
        while True:
            self._wake.clear()
            failed = await self.drain_once()
            backoff = min(backoff * 2, self.max_backoff) if failed else self.poll
            if failed:
                await asyncio.sleep(backoff)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()

"""The orders service: the checkout saga, the saga's recovery loop, and the notification outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.requests import Request
from starlette.responses import Response

from microservices.api import InventoryClient, NotificationsClient, NotifyIn, PaymentsClient, UsersClient
from microservices.saga import Saga
from microservices.service import Service
from plumbing import contract
from plumbing.host import ComponentContext
from plumbing.outbox import OutboxRelay
from plumbing.responses import json_response
from plumbing.web import Endpoint, internal, path_id, read_json
from shop import orders
from shop.orders import Orders, OutboxItem, Owner

log = logging.getLogger(__name__)


class OrdersService(Service):
    def __init__(self, ctx: ComponentContext) -> None:
        super().__init__(ctx, [orders.SCHEMA], lambda conn: self._endpoints(), upgrade=orders.upgrade)
        me = ctx.credential
        # A saga's calls take at most 4 call timeouts: the lease outlives one with a margin, and is renewed 4 times
        # within it while the order is driven. An order whose lease ran out has lost its coordinator.
        self.lease = 4 * ctx.config.call_timeout + 1.0
        owner = Owner.new(ctx.instance)
        self.notifications = NotificationsClient(ctx.peer("notifications"), me)
        self.relay = OutboxRelay(self.conn, self._deliver, owner=owner, lease=self.lease)
        self.saga = Saga(
            self.conn,
            UsersClient(ctx.peer("users"), me),
            InventoryClient(ctx.peer("inventory"), me),
            PaymentsClient(ctx.peer("payments"), me),
            on_confirmed=self.relay.wake,
            owner=owner,
            lease=self.lease,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        await super().startup()
        self.relay.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._renew_forever(), name="saga-leases"),
            loop.create_task(self._recover_forever(), name="saga-recovery"),
        ]

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.stop()
        await super().shutdown()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 4)
            try:
                await self.saga.renew()
            except Exception:
                log.exception("saga lease renewal failed")

    async def _recover_forever(self) -> None:
        # At start-up this takes over at once what this process owned in its previous life; orders a sibling replica
        # drives are left to it until their lease runs out.
        while True:
            try:
                await self.saga.recover()
            except Exception:
                log.exception("saga recovery pass failed")
            await asyncio.sleep(1.0)

    async def _deliver(self, item: OutboxItem) -> None:
        await self.notifications.deliver(NotifyIn(item.key, item.user_id, item.order_id, item.message))

    def _endpoints(self) -> list[Endpoint]:
        async def checkout(request: Request) -> Response:
            body = await read_json(request, contract.NewOrder)
            order, _ = await self.saga.checkout(body.user_id, body.lines(), request.headers.get("idempotency-key"))
            return json_response(contract.order_out(order), 201)

        async def get_order(request: Request) -> Response:
            return json_response(contract.order_out(Orders(self.conn).get(path_id(request, "order_id"))))

        return internal(
            [
                Endpoint(
                    "POST",
                    "/orders",
                    checkout,
                    "Check out through the saga",
                    contract.NewOrder,
                    {201: contract.OrderOut, 402: None, 404: None, 409: None, 422: None, 503: None},
                    headers=("Idempotency-Key",),
                ),
                Endpoint(
                    "GET", "/orders/{order_id}", get_order, "One order", None, {200: contract.OrderOut, 404: None}
                ),
            ],
            {"POST /orders": ("gateway",), "GET /orders/{order_id}": ("gateway",)},
        )


def build(ctx: ComponentContext) -> OrdersService:
    return OrdersService(ctx)

"""The gateway: the public API (README) in front of the services.

Replies whose shape the service already gives (catalog, products, orders) are passed through byte for byte; the others
are composed from several services (a user and the wallet balance). Refusals of a service come back as the same domain
error and are rendered by the same table as in the monolith, so both topologies answer identically.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from microservices.api import Client, NotificationsClient, PaymentsClient, UsersClient
from plumbing import contract
from plumbing.host import ComponentContext
from plumbing.resilience import Policy
from plumbing.responses import JSON, json_response
from plumbing.web import Handler, build_app, path_id, query, read_body, read_json
from shop.orders import check_optional_key


class Gateway:
    def __init__(self, ctx: ComponentContext) -> None:
        me = ctx.credential
        self.users = UsersClient(ctx.peer("users"), me)
        self.payments = PaymentsClient(ctx.peer("payments"), me)
        self.inventory = Client(ctx.peer("inventory"), me)
        self.notifications = NotificationsClient(ctx.peer("notifications"), me)
        # A checkout runs the whole saga behind this one call: give it the full call timeout, not a single step's.
        self.orders = Client(ctx.peer("orders", Policy(timeout=ctx.config.call_timeout, retries=0)), me)
        self.ready = False
        self.app: Starlette = build_app(
            "gateway", contract.bind(self._handlers()), title=contract.TITLE, ready=lambda: self.ready, auth=ctx.auth
        )

    async def startup(self) -> None:
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False

    def _handlers(self) -> dict[str, Handler]:
        async def register(request: Request) -> Response:
            user = await self.users.register(await read_json(request, contract.NewUser))
            return json_response(contract.user_out(user, 0), 201)

        async def get_user(request: Request) -> Response:
            user_id = path_id(request, "user_id")
            user, balance = await asyncio.gather(self.users.get_user(user_id), self.payments.balance(user_id))
            return json_response(contract.user_out(user, balance))

        async def deposit(request: Request) -> Response:
            body = await read_json(request, contract.NewDeposit)
            # Checked here, at the edge: payments is only ever sent a key it can take (it checks again).
            key = check_optional_key(request.headers.get("idempotency-key"))
            user = await self.users.get_user(path_id(request, "user_id"))
            balance = await self.payments.deposit(user.id, body.amount_cents, key)
            return json_response(contract.BalanceOut(user.id, balance), 201)

        async def list_products(request: Request) -> Response:
            # Validated here, at the edge, so that inventory is only ever asked a well-formed query.
            page = query(request, contract.PageQuery)
            return await passthrough(self.inventory, "GET", f"/products?limit={page.limit}&offset={page.offset}")

        async def get_product(request: Request) -> Response:
            return await passthrough(self.inventory, "GET", f"/products/{path_id(request, 'product_id')}")

        async def checkout(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            headers = {"idempotency-key": key} if key is not None else None
            return await passthrough(self.orders, "POST", "/orders", await read_body(request), headers)

        async def get_order(request: Request) -> Response:
            return await passthrough(self.orders, "GET", f"/orders/{path_id(request, 'order_id')}")

        async def notifications(request: Request) -> Response:
            user = await self.users.get_user(path_id(request, "user_id"))
            return json_response(await self.notifications.for_user(user.id))

        return {
            "register": register,
            "get_user": get_user,
            "deposit": deposit,
            "list_products": list_products,
            "get_product": get_product,
            "checkout": checkout,
            "get_order": get_order,
            "notifications": notifications,
        }


async def passthrough(
    client: Client, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Response:
    """Forward a request whose reply already has the public shape; error replies are raised as domain errors."""
    reply = await client.call(method, path, headers=headers, raw=body)
    return Response(reply.body, reply.status, media_type=JSON)


def build(ctx: ComponentContext) -> Gateway:
    return Gateway(ctx)

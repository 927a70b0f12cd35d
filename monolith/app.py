"""The modular monolith: one process, one SQLite database, contexts calling each other in-process."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from monolith.checkout import checkout
from plumbing import contract
from plumbing.faults import FAULTS, InjectedFault
from plumbing.host import ComponentContext
from plumbing.outbox import OutboxRelay
from plumbing.resilience import Guard, Policy, check_profile
from plumbing.responses import json_response
from plumbing.transports import RemoteCallError
from plumbing.web import Handler, build_app, path_id, query, read_json
from shop import inventory, notifications, orders, payments, users
from shop.connection import Connection
from shop.db import UnitOfWork, connect, create_schema, transactions
from shop.errors import Unavailable
from shop.inventory import Inventory
from shop.notifications import Notification, Notifications
from shop.orders import Orders, OutboxItem, Owner, check_optional_key
from shop.payments import Payments
from shop.seed import SeedSpec, catalog
from shop.seed import users as seed_users
from shop.users import Users

SCHEMAS = (users.SCHEMA, payments.SCHEMA, inventory.SCHEMA, notifications.SCHEMA, orders.SCHEMA)


def seed(conn: Connection, spec: SeedSpec) -> None:
    """Seed the catalog and funded users once (a restarted monolith keeps its data)."""
    if Inventory(conn).page(1, 0)[1] > 0:
        return
    with UnitOfWork(conn) as uow:
        if conn.execute("SELECT COUNT(*) FROM products").fetchone()[0] > 0:  # another worker seeded it meanwhile
            return
        Inventory(conn).seed(catalog(spec))
        Users(conn).seed(seed_users(spec))
        Payments(conn).seed(range(1, spec.users + 1), spec.balance_cents)
        uow.commit()


MODULES = ("users", "inventory", "payments", "notifications", "orders")


def module_guards(profile: str) -> dict[str, Guard] | None:
    """The resilient profile's patterns around each module's entry (None for the naive profile)."""
    if check_profile(profile) == "naive":
        return None
    return {m: Guard(m, Policy(), failures=(InjectedFault,)) for m in MODULES}


async def _enter(name: str, _seconds: float) -> None:
    await FAULTS.enter(name)


async def modules(*names: str, guards: Mapping[str, Guard] | None = None, idempotent: bool = True) -> None:
    """Enter the named modules: where an injected fault of a module bites in the monolith.

    Naive: in-process calls, no timeout, so a hung module holds its callers. Resilient: each entry goes through the
    module's guard (timeout, retries when ``idempotent``, breaker), as a call to the service would.
    """
    if not FAULTS.any:
        return
    for name in names:
        try:
            if guards is None:
                await FAULTS.enter(name)
            else:
                await guards[name].run(partial(_enter, name), idempotent=idempotent)
        except (InjectedFault, RemoteCallError) as exc:
            raise Unavailable(str(exc)) from exc


class Monolith:
    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.conn = connect(ctx.db_url, lock_wait=ctx.config.lock_wait, password=ctx.db_password)
        # A database made by an earlier version: its tables get what the schemas' indexes need first.
        orders.upgrade(self.conn)
        payments.upgrade(self.conn)
        create_schema(self.conn, *SCHEMAS)
        # Every worker runs a relay over the one outbox: each claims the rows it hands over.
        lease = 4 * ctx.config.call_timeout + 1.0
        self.relay = OutboxRelay(self.conn, self._deliver, owner=Owner.new(ctx.instance), lease=lease)
        self.guards = module_guards(ctx.config.profile)
        self.ready = False
        self.app: Starlette = build_app(
            "monolith", contract.bind(self._handlers()), title=contract.TITLE, ready=lambda: self.ready, auth=ctx.auth
        )

    async def startup(self) -> None:
        seed(self.conn, self.ctx.config.seed)
        self.relay.start()
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        await self.relay.stop()
        self.conn.close()

    async def _deliver(self, item: OutboxItem) -> None:
        await modules("notifications", guards=self.guards)
        async for uow in transactions(self.conn):
            with uow:
                Notifications(self.conn).deliver(Notification(item.key, item.user_id, item.order_id, item.message))
                uow.commit()

    def _handlers(self) -> dict[str, Handler]:
        conn = self.conn

        async def register(request: Request) -> Response:
            body = await read_json(request, contract.NewUser)
            await modules("users", guards=self.guards, idempotent=False)
            async for uow in transactions(conn):
                with uow:
                    user = Users(conn).register(body.email, body.name)
                    uow.commit()
            return json_response(contract.user_out(user, 0), 201)

        async def get_user(request: Request) -> Response:
            await modules("users", "payments", guards=self.guards)
            user = Users(conn).get(path_id(request, "user_id"))
            return json_response(contract.user_out(user, Payments(conn).balance(user.id)))

        async def deposit(request: Request) -> Response:
            body = await read_json(request, contract.NewDeposit)
            key = check_optional_key(request.headers.get("idempotency-key"))
            await modules("users", guards=self.guards)
            # A keyed deposit happens once: safe to retry, as the gateway may retry it to the payments service.
            await modules("payments", guards=self.guards, idempotent=key is not None)
            async for uow in transactions(conn):
                with uow:
                    user = Users(conn).get(path_id(request, "user_id"))
                    balance = Payments(conn).deposit(user.id, body.amount_cents, key)
                    uow.commit()
            return json_response(contract.BalanceOut(user.id, balance), 201)

        async def list_products(request: Request) -> Response:
            await modules("inventory", guards=self.guards)
            page = query(request, contract.PageQuery)
            products, total = Inventory(conn).page(page.limit, page.offset)
            return json_response(contract.page_out(products, page.limit, page.offset, total))

        async def get_product(request: Request) -> Response:
            await modules("inventory", guards=self.guards)
            return json_response(contract.product_out(Inventory(conn).get(path_id(request, "product_id"))))

        async def place_order(request: Request) -> Response:
            body = await read_json(request, contract.NewOrder)
            await modules("orders", guards=self.guards, idempotent=False)
            await modules("users", "inventory", "payments", guards=self.guards)
            order, new = await checkout(conn, body.user_id, body.lines(), request.headers.get("idempotency-key"))
            if new:
                self.relay.wake()
            return json_response(contract.order_out(order), 201)

        async def get_order(request: Request) -> Response:
            await modules("orders", guards=self.guards)
            return json_response(contract.order_out(Orders(conn).get(path_id(request, "order_id"))))

        async def list_notifications(request: Request) -> Response:
            await modules("users", "notifications", guards=self.guards)
            user = Users(conn).get(path_id(request, "user_id"))
            return json_response(contract.notifications_out(Notifications(conn).for_user(user.id)))

        return {
            "register": register,
            "get_user": get_user,
            "deposit": deposit,
            "list_products": list_products,
            "get_product": get_product,
            "checkout": place_order,
            "get_order": get_order,
            "notifications": list_notifications,
        }


def build(ctx: ComponentContext) -> Monolith:
    return Monolith(ctx)

"""The public API: one definition of its routes, bodies and replies, served by the monolith and by the gateway.

Both deployments bind their own handlers to :data:`PUBLIC_ROUTES` with :func:`bind`, so the two cannot differ in paths,
schemas or OpenAPI document, and both serialize replies through the converters below, so the bytes are the same too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec

from plumbing.web import Endpoint, Handler, Id, NoQuery
from shop.inventory import MAX_LINES, MAX_PAGE, MAX_QUANTITY, Line, Product
from shop.notifications import Notification
from shop.orders import KEY_PATTERN, MAX_KEY, Order
from shop.payments import MAX_BALANCE, MAX_DEPOSIT
from shop.users import MAX_EMAIL, MAX_NAME, WHITESPACE, User

# shop.users.WHITESPACE as a regular expression class that means the same in Python and in JSON Schema (ECMA-262).
_WS = "".join(f"\\u{ord(c):04x}" for c in WHITESPACE)


class NewUser(msgspec.Struct):
    # The same rules as shop.users (local@domain, surrounding white space ignored; a name is not only white space),
    # stated in the schema so that the document announces every refusal. Lengths are of the text as sent.
    # No NUL (U+0000) anywhere: PostgreSQL's text cannot hold it.
    email: Annotated[
        str,
        msgspec.Meta(
            min_length=3, max_length=MAX_EMAIL, pattern=f"^[{_WS}]*[^@{_WS}\\u0000]+@[^@{_WS}\\u0000]+[{_WS}]*$"
        ),
    ]
    name: Annotated[
        str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=f"^[^\\u0000]*[^{_WS}\\u0000][^\\u0000]*$")
    ]


class NewDeposit(msgspec.Struct):
    amount_cents: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=MAX_DEPOSIT,
            description=f"A wallet holds at most {MAX_BALANCE} cents: a deposit beyond is refused (422).",
        ),
    ]


class LineIn(msgspec.Struct):
    product_id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class NewOrder(msgspec.Struct):
    user_id: Id
    items: Annotated[
        list[LineIn],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_LINES,
            description=f"Lines of the same product add up, to at most {MAX_QUANTITY} units (more is refused, 422).",
        ),
    ]

    def lines(self) -> list[Line]:
        return [Line(item.product_id, item.quantity) for item in self.items]


class UserOut(msgspec.Struct):
    id: int
    email: str
    name: str
    balance_cents: int


class BalanceOut(msgspec.Struct):
    user_id: int
    balance_cents: int


class ProductOut(msgspec.Struct):
    id: int
    sku: str
    name: str
    price_cents: int
    stock: int


class ProductPage(msgspec.Struct):
    items: list[ProductOut]
    limit: int
    offset: int
    total: int


class LineOut(msgspec.Struct):
    product_id: int
    quantity: int
    price_cents: int | None


class OrderOut(msgspec.Struct):
    id: int
    user_id: int
    status: str
    total_cents: int | None
    items: list[LineOut]


class NotificationOut(msgspec.Struct):
    order_id: int | None
    message: str


class NotificationList(msgspec.Struct):
    items: list[NotificationOut]


def user_out(user: User, balance_cents: int) -> UserOut:
    return UserOut(user.id, user.email, user.name, balance_cents)


def product_out(p: Product) -> ProductOut:
    return ProductOut(p.id, p.sku, p.name, p.price_cents, p.stock)


def page_out(products: Sequence[Product], limit: int, offset: int, total: int) -> ProductPage:
    return ProductPage([product_out(p) for p in products], limit, offset, total)


def order_out(order: Order) -> OrderOut:
    lines = [LineOut(line.product_id, line.quantity, line.price_cents) for line in order.lines]
    return OrderOut(order.id, order.user_id, order.status, order.total_cents, lines)


def notifications_out(notes: Sequence[Notification]) -> NotificationList:
    return NotificationList([NotificationOut(n.order_id, n.message) for n in notes])


TITLE = "archbench shop: public API"
MAX_OFFSET = 2**62


class PageQuery(msgspec.Struct, forbid_unknown_fields=True):
    """The query of a catalog page (validated and documented from this one type, as bodies are)."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 20
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET)] = 0


@dataclass(frozen=True)
class RouteSpec:
    """A public route without its handler."""

    key: str
    method: str
    path: str
    summary: str
    body: type | None
    responses: Mapping[int, type | None]
    query: type = NoQuery
    headers: Sequence[str] = ()
    optional_headers: Sequence[str] = ()


# What shop.orders.check_key accepts: 1 to MAX_KEY printable ASCII characters, no space first or last (HTTP strips
# the spaces around a header value: such a key would not arrive as sent).
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY, pattern=KEY_PATTERN)]
KEY_SCHEMA = msgspec.json.schema(Key)

PUBLIC_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("register", "POST", "/users", "Register a user", NewUser, {201: UserOut, 409: None, 422: None}),
    RouteSpec("get_user", "GET", "/users/{user_id}", "One user and balance", None, {200: UserOut, 404: None}),
    RouteSpec(
        "deposit",
        "POST",
        "/users/{user_id}/deposits",
        "Fund the user's wallet; with an Idempotency-Key (the user's own), a retry credits once and answers the same",
        NewDeposit,
        {201: BalanceOut, 404: None, 422: None},
        optional_headers=("Idempotency-Key",),
    ),
    RouteSpec(
        "list_products", "GET", "/products", "A page of the catalog", None, {200: ProductPage, 422: None}, PageQuery
    ),
    RouteSpec("get_product", "GET", "/products/{product_id}", "One product", None, {200: ProductOut, 404: None}),
    RouteSpec(
        "checkout",
        "POST",
        "/orders",
        "Check out: reserve stock, charge the wallet, confirm the order",
        NewOrder,
        {201: OrderOut, 402: None, 404: None, 409: None, 422: None, 503: None},
        headers=("Idempotency-Key",),
    ),
    RouteSpec("get_order", "GET", "/orders/{order_id}", "One order with its status", None, {200: OrderOut, 404: None}),
    RouteSpec(
        "notifications",
        "GET",
        "/users/{user_id}/notifications",
        "Notifications delivered to the user, newest first",
        None,
        {200: NotificationList, 404: None},
    ),
)


def bind(handlers: Mapping[str, Handler]) -> list[Endpoint]:
    """The public endpoints served by ``handlers`` (one per route key, no more, no less)."""
    keys = {spec.key for spec in PUBLIC_ROUTES}
    if set(handlers) != keys:
        raise ValueError(f"handlers must be exactly {sorted(keys)}, got {sorted(handlers)}")
    return [
        Endpoint(
            s.method,
            s.path,
            handlers[s.key],
            s.summary,
            s.body,
            s.responses,
            s.query,
            s.headers,
            optional_headers=s.optional_headers,
            header_schemas={"Idempotency-Key": KEY_SCHEMA},
        )
        for s in PUBLIC_ROUTES
    ]

"""The services' internal API: message types and ONE typed client per service, shared by every caller.

Each client is the remote implementation of a context: the orders service and the gateway call it as they would call
``shop`` in-process, except that it can also fail in transport (:class:`~plumbing.transports.RemoteCallError`, whose
outcome is unknown). Error replies are turned back into the domain error they came from, once, here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, TypeVar

import msgspec

from plumbing import tracing
from plumbing.auth import CREDENTIAL_HEADER
from plumbing.contract import LineIn, NewDeposit, NewUser, NotificationList
from plumbing.responses import JSON
from plumbing.transports import Reply, Transport
from plumbing.web import Id, decode, error_from_body
from shop.inventory import Line, PricedLine
from shop.users import User

T = TypeVar("T")


class UserRecord(msgspec.Struct):
    id: int
    email: str
    name: str


class Balance(msgspec.Struct):
    user_id: int
    balance_cents: int


class ChargeIn(msgspec.Struct):
    order_id: Id
    user_id: Id
    amount_cents: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class ChargeOut(msgspec.Struct):
    order_id: int
    status: str


class ReserveIn(msgspec.Struct):
    order_id: Id
    items: list[LineIn]


class PricedLineOut(msgspec.Struct):
    product_id: int
    quantity: int
    price_cents: int


class ReservationOut(msgspec.Struct):
    order_id: int
    status: str
    items: list[PricedLineOut]


class NotifyIn(msgspec.Struct):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    user_id: Id
    order_id: Id | None
    message: Annotated[str, msgspec.Meta(max_length=2000)]


class Delivered(msgspec.Struct):
    key: str
    created: bool


def priced_out(lines: Sequence[PricedLine]) -> list[PricedLineOut]:
    return [PricedLineOut(p.product_id, p.quantity, p.price_cents) for p in lines]


class Client:
    """Calls one service: JSON in and out, trace context propagated, error replies raised as domain errors."""

    def __init__(self, transport: Transport, credential: str | None = None) -> None:
        self.transport = transport
        self.credential = credential

    async def call(
        self,
        method: str,
        path: str,
        payload: object = None,
        headers: Mapping[str, str] | None = None,
        *,
        raw: bytes | None = None,
        idempotent: bool | None = None,
    ) -> Reply:
        """Send ``payload`` encoded as JSON (or ``raw``, already encoded); an error reply raises its domain error."""
        body = raw if raw is not None else (msgspec.json.encode(payload) if payload is not None else None)
        sent = {"content-type": JSON} if body is not None else {}
        if headers:
            sent.update(headers)
        if self.credential is not None:
            sent[CREDENTIAL_HEADER] = self.credential
        trace = tracing.current()
        if trace is None:
            reply = await self.transport.request(method, path, body=body, headers=sent, idempotent=idempotent)
        else:
            reply = await self._traced(trace, method, path, body, sent, idempotent)
        if reply.status >= 400:
            raise error_from_body(reply.status, reply.body)
        return reply

    async def _traced(
        self,
        trace: tracing.Context,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        idempotent: bool | None,
    ) -> Reply:
        call_id = tracing.new_id()
        headers["traceparent"] = tracing.traceparent(trace.trace_id, call_id)
        started, reply = time.perf_counter(), None
        try:
            reply = await self.transport.request(method, path, body=body, headers=headers, idempotent=idempotent)
            return reply
        finally:
            elapsed = time.perf_counter() - started
            status, received = (reply.status, len(reply.body)) if reply is not None else (0, 0)
            tracing.record_call(trace, call_id, f"{method} {path}", elapsed, len(body or b""), received, status)

    async def get(self, path: str, type_: type[T]) -> T:
        return decode((await self.call("GET", path)).body, type_)

    async def post(
        self,
        path: str,
        payload: object,
        type_: type[T],
        headers: Mapping[str, str] | None = None,
        *,
        idempotent: bool | None = None,
    ) -> T:
        """POST ``payload``; ``idempotent=True`` for steps keyed by an id (safe to retry after a timeout)."""
        return decode((await self.call("POST", path, payload, headers, idempotent=idempotent)).body, type_)


class UsersClient(Client):
    async def register(self, body: NewUser) -> User:
        record = await self.post("/users", body, UserRecord)
        return User(record.id, record.email, record.name)

    async def get_user(self, user_id: int) -> User:
        record = await self.get(f"/users/{user_id}", UserRecord)
        return User(record.id, record.email, record.name)


class PaymentsClient(Client):
    async def balance(self, user_id: int) -> int:
        return (await self.get(f"/wallets/{user_id}", Balance)).balance_cents

    async def deposit(self, user_id: int, amount_cents: int, key: str | None = None) -> int:
        """Fund a wallet; with an Idempotency-Key the deposit happens once, so it is safe to retry (idempotent)."""
        headers = {"idempotency-key": key} if key is not None else None
        path = f"/wallets/{user_id}/deposits"
        reply = await self.post(path, NewDeposit(amount_cents), Balance, headers, idempotent=key is not None)
        return reply.balance_cents

    async def charge(self, order_id: int, user_id: int, amount_cents: int) -> str:
        charge = ChargeIn(order_id, user_id, amount_cents)
        return (await self.post("/charges", charge, ChargeOut, idempotent=True)).status

    async def refund(self, order_id: int) -> str:
        return (await self.post(f"/charges/{order_id}/refund", None, ChargeOut, idempotent=True)).status


class InventoryClient(Client):
    async def reserve(self, order_id: int, lines: Sequence[Line]) -> list[PricedLine]:
        items = [LineIn(line.product_id, line.quantity) for line in lines]
        reply = await self.post("/reservations", ReserveIn(order_id, items), ReservationOut, idempotent=True)
        return [PricedLine(p.product_id, p.quantity, p.price_cents) for p in reply.items]

    async def commit(self, order_id: int) -> str:
        return (await self.post(f"/reservations/{order_id}/commit", None, ReservationOut, idempotent=True)).status

    async def release(self, order_id: int) -> str:
        return (await self.post(f"/reservations/{order_id}/release", None, ReservationOut, idempotent=True)).status


class NotificationsClient(Client):
    async def deliver(self, note: NotifyIn) -> bool:
        return (await self.post("/notifications", note, Delivered, idempotent=True)).created

    async def for_user(self, user_id: int) -> NotificationList:
        return await self.get(f"/users/{user_id}/notifications", NotificationList)

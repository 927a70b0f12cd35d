"""The payments service: wallets, deposits, and idempotent charges and refunds keyed by order id."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from microservices.api import Balance, ChargeIn, ChargeOut
from microservices.service import Service
from plumbing.contract import KEY_SCHEMA, NewDeposit
from plumbing.host import ComponentContext
from plumbing.responses import json_response
from plumbing.web import Endpoint, internal, path_id, read_json
from shop import payments
from shop.connection import Connection
from shop.db import transactions
from shop.orders import check_optional_key
from shop.payments import Payments
from shop.seed import SeedSpec


def seed(conn: Connection, spec: SeedSpec) -> None:
    (deposits,) = conn.execute("SELECT COUNT(*) FROM deposits").fetchone()
    if deposits == 0:
        Payments(conn).seed(range(1, spec.users + 1), spec.balance_cents)


def endpoints(conn: Connection) -> list[Endpoint]:
    async def balance(request: Request) -> Response:
        user_id = path_id(request, "user_id")
        return json_response(Balance(user_id, Payments(conn).balance(user_id)))

    async def deposit(request: Request) -> Response:
        body = await read_json(request, NewDeposit)
        user_id = path_id(request, "user_id")
        key = check_optional_key(request.headers.get("idempotency-key"))
        async for uow in transactions(conn):
            with uow:
                new_balance = Payments(conn).deposit(user_id, body.amount_cents, key)
                uow.commit()
        return json_response(Balance(user_id, new_balance), 201)

    async def charge(request: Request) -> Response:
        body = await read_json(request, ChargeIn)
        async for uow in transactions(conn):
            with uow:
                done = Payments(conn).charge(body.order_id, body.user_id, body.amount_cents)
                uow.commit()
        return json_response(ChargeOut(done.order_id, done.status), 201)

    async def refund(request: Request) -> Response:
        order_id = path_id(request, "order_id")
        async for uow in transactions(conn):
            with uow:
                status = Payments(conn).refund(order_id)
                uow.commit()
        return json_response(ChargeOut(order_id, status))

    return internal(
        [
            Endpoint(
                "GET",
                "/wallets/{user_id}",
                balance,
                "Wallet balance (0 without a wallet)",
                None,
                {200: Balance, 404: None},
            ),
            Endpoint(
                "POST",
                "/wallets/{user_id}/deposits",
                deposit,
                "Fund a wallet (once per user and Idempotency-Key, when one is sent)",
                NewDeposit,
                {201: Balance, 404: None, 422: None},
                optional_headers=("Idempotency-Key",),
                header_schemas={"Idempotency-Key": KEY_SCHEMA},
            ),
            Endpoint(
                "POST",
                "/charges",
                charge,
                "Charge for an order (idempotent by order id)",
                ChargeIn,
                {201: ChargeOut, 402: None, 409: None, 422: None},
            ),
            Endpoint(
                "POST",
                "/charges/{order_id}/refund",
                refund,
                "Refund or void the charge of an order (idempotent)",
                None,
                {200: ChargeOut, 404: None},
            ),
        ],
        {
            "GET /wallets/{user_id}": ("gateway",),
            "POST /wallets/{user_id}/deposits": ("gateway",),
            "POST /charges": ("orders",),
            "POST /charges/{order_id}/refund": ("orders",),
        },
    )


def build(ctx: ComponentContext) -> Service:
    return Service(ctx, [payments.SCHEMA], endpoints, seed, upgrade=payments.upgrade)

"""The inventory service: the catalog and reservations keyed by order id."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from microservices.api import ReservationOut, ReserveIn, priced_out
from microservices.service import Service
from plumbing import contract
from plumbing.host import ComponentContext
from plumbing.responses import json_response
from plumbing.web import Endpoint, Handler, internal, path_id, query, read_json
from shop import inventory
from shop.connection import Connection
from shop.db import transactions
from shop.inventory import Inventory, Line
from shop.seed import SeedSpec, catalog


def seed(conn: Connection, spec: SeedSpec) -> None:
    if Inventory(conn).page(1, 0)[1] == 0:
        Inventory(conn).seed(catalog(spec))


def endpoints(conn: Connection) -> list[Endpoint]:
    async def list_products(request: Request) -> Response:
        page = query(request, contract.PageQuery)
        products, total = Inventory(conn).page(page.limit, page.offset)
        return json_response(contract.page_out(products, page.limit, page.offset, total))

    async def get_product(request: Request) -> Response:
        return json_response(contract.product_out(Inventory(conn).get(path_id(request, "product_id"))))

    async def reserve(request: Request) -> Response:
        body = await read_json(request, ReserveIn)
        lines = [Line(item.product_id, item.quantity) for item in body.items]
        async for uow in transactions(conn):
            with uow:
                priced = Inventory(conn).reserve(body.order_id, lines)
                uow.commit()
        return json_response(ReservationOut(body.order_id, "HELD", priced_out(priced)), 201)

    def transition(step: str) -> Handler:
        async def handler(request: Request) -> Response:
            order_id = path_id(request, "order_id")
            stock = Inventory(conn)
            async for uow in transactions(conn):
                with uow:
                    if step == "commit":
                        stock.commit(order_id)
                    else:
                        stock.release(order_id)
                    uow.commit()
            status = stock.reservation_status(order_id) or "RELEASED"
            return json_response(ReservationOut(order_id, status, priced_out(stock.lines(order_id))))

        return handler

    return internal(
        [
            Endpoint(
                "GET",
                "/products",
                list_products,
                "A page of the catalog",
                None,
                {200: contract.ProductPage, 422: None},
                contract.PageQuery,
            ),
            Endpoint(
                "GET", "/products/{product_id}", get_product, "One product", None, {200: contract.ProductOut, 404: None}
            ),
            Endpoint(
                "POST",
                "/reservations",
                reserve,
                "Hold stock for an order (idempotent by order id)",
                ReserveIn,
                {201: ReservationOut, 404: None, 409: None, 422: None},
            ),
            Endpoint(
                "POST",
                "/reservations/{order_id}/commit",
                transition("commit"),
                "Turn held stock into a sale (idempotent)",
                None,
                {200: ReservationOut, 404: None, 409: None},
            ),
            Endpoint(
                "POST",
                "/reservations/{order_id}/release",
                transition("release"),
                "Give held stock back (idempotent; leaves a tombstone when nothing was held)",
                None,
                {200: ReservationOut, 404: None, 409: None},
            ),
        ],
        {
            "GET /products": ("gateway",),
            "GET /products/{product_id}": ("gateway",),
            "POST /reservations": ("orders",),
            "POST /reservations/{order_id}/commit": ("orders",),
            "POST /reservations/{order_id}/release": ("orders",),
        },
    )


def build(ctx: ComponentContext) -> Service:
    return Service(ctx, [inventory.SCHEMA], endpoints, seed)

"""The notifications service: stores each notification once (de-duplicated by key) and lists them per user."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from microservices.api import Delivered, NotifyIn
from microservices.service import Service
from plumbing import contract
from plumbing.host import ComponentContext
from plumbing.responses import json_response
from plumbing.web import Endpoint, internal, path_id, read_json
from shop import notifications
from shop.connection import Connection
from shop.db import transactions
from shop.notifications import Notification, Notifications


def endpoints(conn: Connection) -> list[Endpoint]:
    async def deliver(request: Request) -> Response:
        body = await read_json(request, NotifyIn)
        async for uow in transactions(conn):
            with uow:
                created = Notifications(conn).deliver(Notification(body.key, body.user_id, body.order_id, body.message))
                uow.commit()
        return json_response(Delivered(body.key, created), 201 if created else 200)

    async def for_user(request: Request) -> Response:
        notes = Notifications(conn).for_user(path_id(request, "user_id"))
        return json_response(contract.notifications_out(notes))

    return internal(
        [
            Endpoint(
                "POST",
                "/notifications",
                deliver,
                "Deliver a notification (de-duplicated by key)",
                NotifyIn,
                {200: Delivered, 201: Delivered, 422: None},
            ),
            Endpoint(
                "GET",
                "/users/{user_id}/notifications",
                for_user,
                "Notifications of a user, newest first",
                None,
                {200: contract.NotificationList, 404: None},
            ),
        ],
        {"POST /notifications": ("orders",), "GET /users/{user_id}/notifications": ("gateway",)},
    )


def build(ctx: ComponentContext) -> Service:
    return Service(ctx, [notifications.SCHEMA], endpoints)

"""The users service: registration and look-up over its own database."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from microservices.api import UserRecord
from microservices.service import Service
from plumbing.contract import NewUser
from plumbing.host import ComponentContext
from plumbing.responses import json_response
from plumbing.web import Endpoint, internal, path_id, read_json
from shop import users
from shop.connection import Connection
from shop.db import transactions
from shop.seed import SeedSpec
from shop.seed import users as seed_users
from shop.users import User, Users


def record(user: User) -> UserRecord:
    return UserRecord(user.id, user.email, user.name)


def seed(conn: Connection, spec: SeedSpec) -> None:
    if Users(conn).count() == 0:
        Users(conn).seed(seed_users(spec))


def endpoints(conn: Connection) -> list[Endpoint]:
    async def register(request: Request) -> Response:
        body = await read_json(request, NewUser)
        async for uow in transactions(conn):
            with uow:
                user = Users(conn).register(body.email, body.name)
                uow.commit()
        return json_response(record(user), 201)

    async def get_user(request: Request) -> Response:
        return json_response(record(Users(conn).get(path_id(request, "user_id"))))

    return internal(
        [
            Endpoint("POST", "/users", register, "Register a user", NewUser, {201: UserRecord, 409: None, 422: None}),
            Endpoint("GET", "/users/{user_id}", get_user, "One user", None, {200: UserRecord, 404: None}),
        ],
        {"POST /users": ("gateway",), "GET /users/{user_id}": ("gateway", "orders")},
    )


def build(ctx: ComponentContext) -> Service:
    return Service(ctx, [users.SCHEMA], endpoints, seed)

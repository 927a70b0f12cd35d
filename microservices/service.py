"""What every service has in common: its own SQLite file, its schema, its seed, its app. Written once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.applications import Starlette

from plumbing.host import ComponentContext
from plumbing.web import Endpoint, build_app
from shop.connection import Connection
from shop.db import connect, create_schema, transactions
from shop.seed import SeedSpec

Seeder = Callable[[Connection, SeedSpec], None]


class Service:
    """A service component: one database of its own and the endpoints over it."""

    def __init__(
        self,
        ctx: ComponentContext,
        schemas: Sequence[str],
        endpoints: Callable[[Connection], Sequence[Endpoint]],
        seeder: Seeder | None = None,
        upgrade: Callable[[Connection], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.conn = connect(ctx.db_url, lock_wait=ctx.config.lock_wait, password=ctx.db_password)
        if upgrade is not None:
            # A database made by an earlier version: its tables get what the schema's indexes need first.
            upgrade(self.conn)
        create_schema(self.conn, *schemas)
        self.seeder = seeder
        self.ready = False
        self.app: Starlette = build_app(ctx.name, endpoints(self.conn), ready=lambda: self.ready, auth=ctx.auth)

    async def startup(self) -> None:
        if self.seeder is not None:
            async for uow in transactions(self.conn):
                with uow:
                    self.seeder(self.conn, self.ctx.config.seed)
                    uow.commit()
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        self.conn.close()

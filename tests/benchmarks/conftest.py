"""The public API of every topology behind one synchronous call, for pytest-benchmark (which times sync functions).

Two ways in, each the same for every topology so that only the topology differs within a benchmark group:

* in-process: the topology's public process (a ``ProcessApp``, as in ``inprocess_shop``) runs on a private uvloop
  event loop held by the fixture; a call is ``loop.run_until_complete(transport.request(...))`` through the project's
  in-process ASGI caller (``open_transport("asgi")``, about 15 us, the same caller the colocated services use between
  them). Not httpx.ASGITransport: at about 150 us a call it would be most of what the in-process figures show.
* sockets: the session's real deployment (``Deployments.get``), called with ``http.client.HTTPConnection``: the
  stdlib client, one keep-alive connection, TCP_NODELAY, a few tens of microseconds per call.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
import uvloop

from plumbing.host import ProcessApp
from plumbing.topology import PUBLIC, layout, make_config
from plumbing.transports import Transport, open_transport
from tests.shopfixtures import TEST_SEED, VARIANTS, Deployments

JSON_HEADERS = {"Content-Type": "application/json"}


class Api(Protocol):
    """One topology's public API, called synchronously."""

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request and return ``(status, body)``."""
        ...

    def pause(self, seconds: float) -> None:
        """Let time pass (and, in-process, let the app's background work run)."""
        ...

    def close(self) -> None: ...


@asynccontextmanager
async def inprocess_transport(topology: str) -> AsyncIterator[Transport]:
    """The topology's public process started in this event loop, behind the in-process ASGI caller (no socket).

    The same start-up as ``tests.shopfixtures.inprocess_shop``, which yields an httpx client instead.
    """
    with tempfile.TemporaryDirectory(prefix=f"archbench-bench-{topology}-") as tmp:
        ports = {name: 1 for name, _ in layout(topology)}  # no socket is opened in-process; peers are all local
        config = make_config(topology, Path(tmp), ports, TEST_SEED, "aiohttp")
        app = ProcessApp(config, config.process_of(PUBLIC[topology]))
        await app.startup()
        transport = open_transport("asgi", "http://shop.test", app=app.front, timeout=10)
        try:
            yield transport
        finally:
            await transport.aclose()
            await app.shutdown()


class InProcessApi:
    """The public process running on a private event loop of its own; each call runs the loop until it is answered."""

    def __init__(self, topology: str) -> None:
        # uvloop, as under uvicorn in the deployed processes.
        self.loop = uvloop.new_event_loop()
        self.stack = AsyncExitStack()
        try:
            self.transport = self.loop.run_until_complete(self.stack.enter_async_context(inprocess_transport(topology)))
        except BaseException:
            self.loop.close()
            raise

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        reply = self.loop.run_until_complete(self.transport.request(method, path, body=body, headers=headers))
        return reply.status, reply.body

    def pause(self, seconds: float) -> None:
        # The app's background work (the outbox delivery worker) only runs while the loop does.
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.stack.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


class SocketApi:
    """A real deployment over loopback: one keep-alive ``http.client`` connection (stdlib, TCP_NODELAY)."""

    def __init__(self, public_url: str, auth: tuple[tuple[str, str], ...] = ()) -> None:
        self.connection = http.client.HTTPConnection(urlsplit(public_url).netloc, timeout=10)
        self.auth = dict(auth)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body, headers={**self.auth, **(headers or {})})
        reply = self.connection.getresponse()
        # Read to the end, so the next request can reuse the connection.
        return reply.status, reply.read()

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self.connection.close()


def checkout_body(user_id: int, product_id: int) -> bytes:
    """One unit of one product: the smallest checkout, which still runs every step (user, stock, payment, order)."""
    return json.dumps({"user_id": user_id, "items": [{"product_id": product_id, "quantity": 1}]}).encode()


def checkout_headers(key: str) -> dict[str, str]:
    return {**JSON_HEADERS, "Idempotency-Key": key}


def call_json(api: Api, method: str, path: str, payload: object | None = None, expect: int = 200) -> Any:
    """A set-up call (not timed): send ``payload`` as JSON, check the status, return the decoded reply."""
    body = None if payload is None else json.dumps(payload).encode()
    status, reply = api.request(method, path, body, JSON_HEADERS)
    assert status == expect, reply
    return json.loads(reply)


@dataclass(frozen=True)
class Target:
    """A topology under benchmark and the data its operations read."""

    topology: str
    mode: str
    api: Api
    run_token: str  # makes Idempotency-Keys unique across runs against a shared deployment
    user_id: int  # a seeded, funded user, only read
    order_id: int  # the one order of ``reader_id``
    reader_id: int  # a user with exactly one order and one delivered notification

    @property
    def checkout_users(self) -> range:
        """Seeded users are funded generously (``SeedSpec.balance_cents``): thousands of checkouts each."""
        return range(1, TEST_SEED.users + 1)

    @property
    def products(self) -> range:
        return range(1, TEST_SEED.products + 1)


def prepare(api: Api, topology: str, mode: str) -> Target:
    """Give the read operations fixed data: a fresh user with one order whose notification has been delivered."""
    token = uuid.uuid4().hex[:12]
    reader = call_json(api, "POST", "/users", {"email": f"bench-{token}@test.example", "name": "Bench"}, 201)
    call_json(api, "POST", f"/users/{reader['id']}/deposits", {"amount_cents": 1_000_000}, 201)
    key = f"bench-{token}-setup"
    status, order = api.request("POST", "/orders", checkout_body(reader["id"], 1), checkout_headers(key))
    assert status == 201, order
    wait_for_notification(api, reader["id"])
    return Target(topology, mode, api, token, 1, int(json.loads(order)["id"]), int(reader["id"]))


def wait_for_notification(api: Api, user_id: int, timeout: float = 10.0) -> None:
    """Notifications are delivered asynchronously: wait (bounded) so the list under benchmark has a fixed length."""
    deadline = time.monotonic() + timeout
    while not call_json(api, "GET", f"/users/{user_id}/notifications")["items"]:
        assert time.monotonic() < deadline, f"no notification for user {user_id} within {timeout}s"
        api.pause(0.02)


def variant_params() -> list[Any]:
    """Every (topology, mode) of the contract suite; the socket ones carry the ``sockets`` mark (they start servers)."""
    return [
        pytest.param((t, m), id=f"{t}-{m}", marks=[pytest.mark.sockets] if m == "sockets" else []) for t, m in VARIANTS
    ]


@pytest.fixture(scope="module", params=variant_params())
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """One topology in one mode, set up once per module: pytest groups the tests by it, so one app runs at a time."""
    topology, mode = request.param
    api: Api
    if mode == "inprocess":
        api = InProcessApi(topology)
    else:
        # Asked for only here, so that in-process benchmarks alone never start a server.
        deployments: Deployments = request.getfixturevalue("deployments")
        deployment = deployments.get(topology)
        api = SocketApi(deployment.public_url, deployment.auth_headers)
    try:
        yield prepare(api, topology, mode)
    finally:
        api.close()

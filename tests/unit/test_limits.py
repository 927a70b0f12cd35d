"""plumbing.limits over real sockets: slow, incomplete, idle and oversized requests against real processes.

Each test starts a topology as the harness does (its processes read the ``ARCHBENCH_*`` limits from the environment)
and talks to it with raw sockets, since an HTTP client would never send what a slow or hostile one does.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.system.deploy import Deployment, deploy
from plumbing.limits import (
    KEEP_ALIVE_ENV,
    MAX_CONNECTIONS_ENV,
    MAX_HEAD_ENV,
    REQUEST_TIMEOUT_ENV,
    Limits,
)
from shop.seed import SeedSpec

pytestmark = pytest.mark.sockets

SMALL = SeedSpec(products=20, users=5)
REQUEST_TIMEOUT = 1.0
KEEP_ALIVE = 1.5
MAX_CONNECTIONS = 40
SLACK = 2.0  # scheduling noise on a busy machine


@pytest.fixture(scope="module", params=["monolith", "colocated", "microservices"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(REQUEST_TIMEOUT_ENV, str(REQUEST_TIMEOUT))
        mp.setenv(KEEP_ALIVE_ENV, str(KEEP_ALIVE))
        mp.setenv(MAX_CONNECTIONS_ENV, str(MAX_CONNECTIONS))
        mp.setenv(MAX_HEAD_ENV, "16384")
        with deploy(request.param, tmp_path_factory.mktemp(request.param), seed=SMALL) as deployment:
            yield deployment


def connect(deployment: Deployment) -> socket.socket:
    host, port = deployment.public_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10.0)


def key_header(deployment: Deployment) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in deployment.auth_headers)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks), time.monotonic() - started
        chunks.append(chunk)


def test_an_incomplete_body_is_answered_408_and_closed(shop: Deployment) -> None:
    with connect(shop) as sock:
        head = b"POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n"
        sock.sendall(head + key_header(shop) + b"\r\n{")
        reply, waited = read_until_closed(sock, REQUEST_TIMEOUT + SLACK + 5)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b"connection: close" in reply.lower()
    assert REQUEST_TIMEOUT * 0.8 <= waited <= REQUEST_TIMEOUT + SLACK


def test_a_head_without_its_blank_line_is_answered_408_and_closed(shop: Deployment) -> None:
    with connect(shop) as sock:
        sock.sendall(b"GET /products/1 HTTP/1.1\r\nhost: x\r\n")
        reply, waited = read_until_closed(sock, REQUEST_TIMEOUT + SLACK + 5)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert waited <= REQUEST_TIMEOUT + SLACK


def test_a_head_trickled_byte_by_byte_is_bounded_by_the_request_timeout(shop: Deployment) -> None:
    request = b"GET /products/1 HTTP/1.1\r\nhost: x\r\n" + b"x-slow: " + b"a" * 100
    with connect(shop) as sock:
        started = time.monotonic()
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > REQUEST_TIMEOUT + SLACK:
                break
        reply, _ = read_until_closed(sock, SLACK + 5)
        waited = time.monotonic() - started
    assert closed or reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert waited <= REQUEST_TIMEOUT + 2 * SLACK


def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout(shop: Deployment) -> None:
    with connect(shop) as sock:
        reply, waited = read_until_closed(sock, KEEP_ALIVE + SLACK + 5)
    assert reply == b""
    assert KEEP_ALIVE * 0.8 <= waited <= KEEP_ALIVE + SLACK


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(shop: Deployment) -> None:
    with connect(shop) as sock:
        sock.sendall(b"GET /products/1 HTTP/1.1\r\nhost: x\r\n" + key_header(shop) + b"\r\n")
        reply, waited = read_until_closed(sock, KEEP_ALIVE + SLACK + 5)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert waited <= KEEP_ALIVE + SLACK


def test_an_oversized_header_is_refused_at_the_edge_with_431(shop: Deployment) -> None:
    body = b'{"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}'
    head = (
        b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\n" % len(body)
        + key_header(shop)
        + b"idempotency-key: "
        + b"k" * (1 << 20)
        + b"\r\n\r\n"
    )
    with connect(shop) as sock:
        with contextlib.suppress(OSError):  # the server may close before it has read everything
            sock.sendall(head + body)
        reply, _ = read_until_closed(sock, 10)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    if shop.topology == "microservices":
        log = (Path(shop.config.run_dir) / "logs").glob("orders*.log")
        assert not any(b"k" * 1024 in p.read_bytes() for p in log)
    # Orders never saw it: no order was placed.
    with connect(shop) as sock:
        sock.sendall(b"GET /orders/1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + key_header(shop) + b"\r\n")
        reply, _ = read_until_closed(sock, 10)
    assert reply.startswith(b"HTTP/1.1 404 "), reply[:200]


def test_connections_beyond_the_cap_are_refused_with_503(shop: Deployment) -> None:
    held = [connect(shop) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        with connect(shop) as extra:
            reply, _ = read_until_closed(extra, 10)
        assert reply.startswith(b"HTTP/1.1 503 "), reply[:200]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)  # the server sees them closed
    with connect(shop) as sock:
        sock.sendall(b"GET /products/1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + key_header(shop) + b"\r\n")
        reply, _ = read_until_closed(sock, 10)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


def test_limits_from_the_environment() -> None:
    assert Limits.from_env({}) == Limits()
    limits = Limits.from_env({REQUEST_TIMEOUT_ENV: "2.5", MAX_CONNECTIONS_ENV: "10"})
    assert (limits.request_timeout, limits.max_connections) == (2.5, 10)
    with pytest.raises(ValueError, match="connection limit"):
        Limits.from_env({MAX_HEAD_ENV: "lots"})
    with pytest.raises(ValueError, match="timeouts"):
        Limits(request_timeout=0)

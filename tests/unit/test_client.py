"""plumbing.transports: every stack against a real uvicorn server on loopback, and the asgi stack in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.system.supervisor import ProcessSpec, Supervisor, free_port
from plumbing.transports import STACKS, RemoteCallError, Reply, open_transport

NETWORK_STACKS = [s for s in STACKS if s != "asgi"]
REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.sockets

# -- the app under call: served by uvicorn in a subprocess, and called in-process by the asgi stack --------------------

finished_sleeps: list[float] = []  # in-process only: lets a test see a timed-out call run to its end


async def _root(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _echo(request: Request) -> Response:
    body = await request.body()
    document: dict[str, object] = {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "body": body.decode(),
        "x_test": request.headers.get("x-test"),
    }
    if request.query_params:
        document["params"] = dict(request.query_params)
    return JSONResponse(document, headers={"X-Reply": "yes"})


async def _status(request: Request) -> Response:
    return JSONResponse({"error": "chosen", "detail": "as asked"}, status_code=int(request.path_params["code"]))


async def _sleep(request: Request) -> Response:
    seconds = float(request.query_params["s"])
    await asyncio.sleep(seconds)
    finished_sleeps.append(seconds)
    return PlainTextResponse("late")


async def _chunked(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd", b"ef"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


async def _crash(request: Request) -> Response:
    raise RuntimeError("boom")


def make_app() -> Starlette:
    """The test server (also started by uvicorn with --factory)."""
    return Starlette(
        routes=[
            Route("/", _root),
            Route("/echo", _echo, methods=["GET", "POST", "HEAD"]),
            Route("/status/{code:int}", _status),
            Route("/sleep", _sleep),
            Route("/chunked", _chunked),
            Route("/crash", _crash),
        ]
    )


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    argv = [
        *(sys.executable, "-m", "uvicorn", "--factory", "tests.unit.test_client:make_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"),
        *("--log-level", "warning", "--no-access-log"),
    ]
    with Supervisor(tmp_path_factory.mktemp("client-server")) as supervisor:
        supervisor.start(ProcessSpec("server", argv, port=port, cwd=REPO_ROOT, ready_path="/"))
        supervisor.wait_ready(timeout=30)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(params=NETWORK_STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def _serving(reply: bytes) -> AsyncIterator[str]:
    """A broken server: reads one request, writes ``reply`` (maybe nothing, maybe half a response), hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


# -- every network stack against uvicorn -------------------------------------------------------------------------------


async def test_get_round_trip_with_query_and_headers(server_url: str, stack: str) -> None:
    transport = open_transport(stack, server_url)
    try:
        reply = await transport.request("GET", "/echo?a=1&b=two", headers={"X-Test": "hello"})
    finally:
        await transport.aclose()
    assert reply.status == 200
    assert json.loads(reply.body) == {
        "method": "GET",
        "path": "/echo",
        "query": "a=1&b=two",
        "body": "",
        "x_test": "hello",
        "params": {"a": "1", "b": "two"},
    }
    assert reply.headers["x-reply"] == "yes"
    assert reply.headers["content-type"] == "application/json"
    assert all(name == name.lower() for name in reply.headers)


async def test_unsafe_characters_in_the_path_are_percent_encoded(server_url: str, stack: str) -> None:
    transport = open_transport(stack, server_url)
    try:
        reply = await transport.request("GET", "/echo?name=Zoë Smith&tag=a%2Fb")
    finally:
        await transport.aclose()
    assert reply.status == 200
    assert json.loads(reply.body)["params"] == {"name": "Zoë Smith", "tag": "a/b"}


async def test_post_round_trip_with_body(server_url: str, stack: str) -> None:
    transport = open_transport(stack, server_url)
    try:
        reply = await transport.request("POST", "/echo", body=b'{"amount_cents": 500}', headers={"x-test": "t"})
    finally:
        await transport.aclose()
    assert reply.status == 200
    assert json.loads(reply.body)["body"] == '{"amount_cents": 500}'
    assert json.loads(reply.body)["x_test"] == "t"


@pytest.mark.parametrize("code", [404, 409, 422, 500, 503])
async def test_error_statuses_are_replies_not_exceptions(server_url: str, stack: str, code: int) -> None:
    transport = open_transport(stack, server_url)
    try:
        reply = await transport.request("GET", f"/status/{code}")
    finally:
        await transport.aclose()
    assert reply == Reply(code, reply.body, reply.headers)
    assert json.loads(reply.body)["error"] == "chosen"


async def test_chunked_and_head_replies(server_url: str, stack: str) -> None:
    transport = open_transport(stack, server_url)
    try:
        chunked = await transport.request("GET", "/chunked")
        head = await transport.request("HEAD", "/echo")
        after_head = await transport.request("GET", "/")  # the pool is still sane after a bodiless reply
    finally:
        await transport.aclose()
    assert (chunked.status, chunked.body) == (200, b"abcdef")
    assert (head.status, head.body) == (200, b"")
    assert (after_head.status, after_head.body) == (200, b"ok")


async def test_concurrent_calls_beyond_the_pool_size_queue_and_succeed(server_url: str, stack: str) -> None:
    transport = open_transport(stack, server_url, pool_size=4)
    try:
        replies = await asyncio.gather(*(transport.request("GET", f"/echo?i={i}") for i in range(40)))
    finally:
        await transport.aclose()
    assert [json.loads(r.body)["query"] for r in replies] == [f"i={i}" for i in range(40)]


async def test_connection_refused(stack: str) -> None:
    target = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    transport = open_transport(stack, target)
    try:
        with pytest.raises(RemoteCallError) as caught:
            await transport.request("GET", "/")
    finally:
        await transport.aclose()
    assert (caught.value.kind, caught.value.target) == ("refused", target)
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize("timeout_at", ["per_call", "transport"])
async def test_slow_handler_times_out(server_url: str, stack: str, timeout_at: str) -> None:
    transport = open_transport(stack, server_url, timeout=0.3 if timeout_at == "transport" else 5.0)
    try:
        with pytest.raises(RemoteCallError) as caught:
            await transport.request("GET", "/sleep?s=3", timeout=0.3 if timeout_at == "per_call" else None)
        assert (await transport.request("GET", "/")).status == 200  # the transport is still usable
    finally:
        await transport.aclose()
    assert caught.value.kind == "timeout"
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    "reply",
    [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"],
    ids=["hang-up-before-reply", "hang-up-mid-body"],
)
async def test_server_hanging_up_is_a_reset(stack: str, reply: bytes) -> None:
    async with _serving(reply) as url:
        transport = open_transport(stack, url)
        try:
            with pytest.raises(RemoteCallError) as caught:
                await transport.request("GET", "/")
        finally:
            await transport.aclose()
    assert caught.value.kind == "reset"


async def test_a_connection_the_server_closed_while_idle_is_not_reused(stack: str) -> None:
    # The server answers once per connection and hangs up without saying "Connection: close".
    async with _serving(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi") as url:
        transport = open_transport(stack, url)
        try:
            first = await transport.request("GET", "/")
            await asyncio.sleep(0.05)  # let the hang-up arrive
            second = await transport.request("GET", "/")
        finally:
            await transport.aclose()
    assert first.body == second.body == b"hi"


def test_created_outside_a_loop_and_used_under_uvloop(server_url: str, stack: str) -> None:
    """Services run under uvicorn's uvloop, the other tests under asyncio's default loop: exercise both."""
    transport = open_transport(stack, server_url)  # no running loop here

    async def scenario() -> tuple[Reply, str]:
        try:
            reply = await transport.request("POST", "/echo", body=b"x")
            try:
                await transport.request("GET", "/sleep?s=3", timeout=0.2)
            except RemoteCallError as exc:
                return reply, exc.kind
            return reply, "no error"
        finally:
            await transport.aclose()

    reply, kind = uvloop.run(scenario())
    assert json.loads(reply.body)["body"] == "x"
    assert kind == "timeout"


# -- the asgi stack, in-process ----------------------------------------------------------------------------------------


async def test_asgi_round_trips() -> None:
    transport = open_transport("asgi", "http://orders:8000", app=make_app())
    try:
        got = await transport.request("GET", "/echo?a=%20b", headers={"x-test": "in-process"})
        posted = await transport.request("POST", "/echo", body=b"payload")
        missing = await transport.request("GET", "/nowhere")
        chunked = await transport.request("GET", "/chunked")
    finally:
        await transport.aclose()
    assert got.status == 200
    assert json.loads(got.body) == {
        "method": "GET",
        "path": "/echo",
        "query": "a=%20b",
        "body": "",
        "x_test": "in-process",
        "params": {"a": " b"},
    }
    assert got.headers["x-reply"] == "yes"
    assert json.loads(posted.body)["body"] == "payload"
    assert missing.status == 404
    assert chunked.body == b"abcdef"


async def test_asgi_error_status_and_crash_are_replies() -> None:
    transport = open_transport("asgi", "http://orders", app=make_app())
    try:
        conflict = await transport.request("GET", "/status/409")
        crash = await transport.request("GET", "/crash")  # a server answers 500 to an exception
    finally:
        await transport.aclose()
    assert conflict.status == 409
    assert crash.status == 500


async def test_asgi_timeout_leaves_the_call_running_like_a_remote_one() -> None:
    transport = open_transport("asgi", "http://orders", app=make_app())
    finished_sleeps.clear()
    try:
        with pytest.raises(RemoteCallError) as caught:
            await transport.request("GET", "/sleep?s=0.2", timeout=0.05)
        assert finished_sleeps == []
        await asyncio.sleep(0.3)
        assert finished_sleeps == [0.2]  # the callee ran to its end: "a remote call that failed may still have run"
    finally:
        await transport.aclose()
    assert (caught.value.kind, caught.value.target) == ("timeout", "http://orders")


async def test_asgi_aclose_cancels_abandoned_calls() -> None:
    transport = open_transport("asgi", "http://orders", app=make_app())
    finished_sleeps.clear()
    with pytest.raises(RemoteCallError):
        await transport.request("GET", "/sleep?s=0.2", timeout=0.01)
    await transport.aclose()
    await asyncio.sleep(0.3)
    assert finished_sleeps == []


# -- configuration errors ----------------------------------------------------------------------------------------------


def test_unknown_stack_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown client stack 'grpc'") as caught:
        open_transport("grpc", "http://127.0.0.1:1")
    assert all(name in str(caught.value) for name in STACKS)


def test_asgi_needs_an_app_and_only_asgi_takes_one() -> None:
    with pytest.raises(ValueError, match="app"):
        open_transport("asgi", "http://orders")
    with pytest.raises(ValueError, match="app"):
        open_transport("aiohttp", "http://127.0.0.1:1", app=make_app())

"""Who may switch tracing on: an outside client's sampled traceparent writes no span on any topology; the harness's
traced requests (with its credential) still give the whole span tree. Spans are written off the event loop, bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.system.deploy import Deployment, deploy
from bench.system.traces import breakdown, load_spans
from plumbing import tracing
from plumbing.tracing import Recorder, Span
from shop.seed import SeedSpec

SMALL = SeedSpec(products=20, users=5)
# The processes whose spans a traced checkout leaves, per topology (colocated: one process writes them all).
CHECKOUT_APPS = {
    "monolith": {"monolith"},
    "colocated": {"gateway", "users", "inventory", "payments", "orders"},
    "microservices": {"gateway", "users", "inventory", "payments", "orders"},
}


@pytest.fixture(scope="module", params=["monolith", "colocated", "microservices"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(request.param, tmp_path_factory.mktemp(request.param), seed=SMALL) as deployment:
        yield deployment


def span_lines(run_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (run_dir / "spans").glob("*.jsonl"))


def spans_of(run_dir: Path, trace_id: str) -> list[Span]:
    time.sleep(tracing.FLUSH_EVERY * 3)  # the writer thread's next batch
    return [s for s in load_spans(run_dir / "spans") if s.trace_id == trace_id]


@pytest.mark.sockets
def test_an_outside_clients_sampled_traceparent_writes_no_span(shop: Deployment) -> None:
    before = span_lines(shop.run_dir)
    with httpx.Client(base_url=shop.public_url, headers=dict(shop.auth_headers), timeout=10) as client:
        for _ in range(50):
            header = tracing.traceparent(tracing.new_id(16), tracing.new_id())
            assert client.get("/products/1", headers={"traceparent": header}).status_code == 200
        # A made-up credential is no better than none.
        forged = {"traceparent": header, "x-service-credential": "harness:" + "0" * 32}
        assert client.get("/products/1", headers=forged).status_code == 200
    time.sleep(tracing.FLUSH_EVERY * 3)
    assert span_lines(shop.run_dir) == before


@pytest.mark.sockets
def test_the_harness_traced_request_gives_the_whole_span_tree(shop: Deployment) -> None:
    trusted = {**dict(shop.auth_headers), **dict(shop.trace_headers)}
    with httpx.Client(base_url=shop.public_url, headers=trusted, timeout=10) as client:
        product_trace = tracing.new_id(16)
        header = {"traceparent": tracing.traceparent(product_trace, tracing.new_id())}
        assert client.get("/products/1", headers=header).status_code == 200

        user = client.post("/users", json={"email": f"trace-{shop.topology}@test.example", "name": "T"}).json()["id"]
        assert client.post(f"/users/{user}/deposits", json={"amount_cents": 10_000_000}).status_code == 201
        checkout_trace = tracing.new_id(16)
        body = {"user_id": user, "items": [{"product_id": 2, "quantity": 1}]}
        headers = {"traceparent": tracing.traceparent(checkout_trace, tracing.new_id()), "idempotency-key": "traced"}
        assert client.post("/orders", json=body, headers=headers).status_code == 201

    product = spans_of(shop.run_dir, product_trace)
    summary, hops = breakdown(product)
    if shop.topology == "monolith":
        assert [(s.kind, s.app) for s in product] == [("server", "monolith")]
    else:  # the gateway's server and client spans, inventory's server span under the client's
        expected = {("server", "gateway"), ("client", "gateway"), ("server", "inventory")}
        assert {(s.kind, s.app) for s in product} == expected
        assert summary["internal_calls"] == 1
        assert [(h["caller"], h["callee"]) for h in hops] == [("gateway", "inventory")]

    checkout = spans_of(shop.run_dir, checkout_trace)
    assert {s.app for s in checkout if s.kind == "server"} == CHECKOUT_APPS[shop.topology]
    summary, hops = breakdown(checkout)
    assert all(h["callee"] != "?" for h in hops)  # every internal call has its callee's span: propagation kept


def test_spans_are_written_by_a_thread_in_batches_and_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    path = tmp_path / "spans" / "p.jsonl"
    recorder.configure(path)
    span = Span("t" * 32, "s" * 16, None, "server", "app", "GET /", 0, 1, 0, 0, 200)
    recorder.record(span)
    assert path.read_bytes() == b""  # nothing written on the recording (event loop) thread
    deadline = time.monotonic() + 5
    while not path.read_bytes() and time.monotonic() < deadline:
        time.sleep(tracing.FLUSH_EVERY / 2)
    assert len(path.read_bytes().splitlines()) == 1

    monkeypatch.setattr(tracing, "MAX_BUFFERED", 0)  # a full buffer: new spans are dropped, not queued
    recorder.record(span)
    assert recorder.dropped == 1
    recorder.configure(None)  # flushes what was buffered
    assert len(path.read_bytes().splitlines()) == 1

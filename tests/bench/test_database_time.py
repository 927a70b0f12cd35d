"""The database's share of the per-hop breakdown, from real processes: a traced checkout through each topology over
sockets says how much of each component's time went to its database (none for the gateway, which keeps no data),
on SQLite and on PostgreSQL; and a run's ``traces`` and ``hops`` tables carry it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.report.results import load_results
from bench.system.deploy import Deployment, deploy
from bench.system.traces import breakdown, load_spans
from plumbing import tracing
from plumbing.topology import TOPOLOGIES
from plumbing.tracing import Span
from shop.seed import SeedSpec
from tests.pgfixtures import ENGINES

pytestmark = pytest.mark.sockets

SMALL = SeedSpec(products=20, users=5)
# The components whose server spans a traced checkout leaves (its notification is sent later, outside the request).
CHECKOUT_APPS = {
    "monolith": {"monolith"},
    "colocated": {"gateway", "users", "inventory", "payments", "orders"},
    "microservices": {"gateway", "users", "inventory", "payments", "orders"},
}
KEEPS_NO_DATA = {"gateway"}
CASES = [pytest.param((topology, "sqlite"), id=topology) for topology in TOPOLOGIES] + [
    pytest.param(("microservices", "postgres"), id="microservices-postgresql", marks=ENGINES[1].marks)
]


@pytest.fixture(scope="module", params=CASES)
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    topology, db = request.param
    with deploy(topology, tmp_path_factory.mktemp(f"{topology}-{db}"), seed=SMALL, db=db) as deployment:
        yield deployment


def traced_checkout(shop: Deployment) -> list[Span]:
    """The spans of one checkout sent as the harness sends its traced requests, once every component wrote its own."""
    trusted = {**dict(shop.auth_headers), **dict(shop.trace_headers)}
    trace_id = tracing.new_id(16)
    with httpx.Client(base_url=shop.public_url, headers=trusted, timeout=10) as client:
        user = client.post("/users", json={"email": "db-time@test.example", "name": "T"}).json()["id"]
        assert client.post(f"/users/{user}/deposits", json={"amount_cents": 10_000_000}).status_code == 201
        body = {"user_id": user, "items": [{"product_id": 2, "quantity": 1}]}
        headers = {"traceparent": tracing.traceparent(trace_id, tracing.new_id()), "idempotency-key": "db-time"}
        assert client.post("/orders", json=body, headers=headers).status_code == 201
    deadline = time.monotonic() + 5
    while True:  # each process's writer thread appends its spans within FLUSH_EVERY
        spans = [s for s in load_spans(shop.run_dir / "spans") if s.trace_id == trace_id]
        if {s.app for s in spans if s.kind == "server"} >= CHECKOUT_APPS[shop.topology] or time.monotonic() > deadline:
            return spans
        time.sleep(tracing.FLUSH_EVERY)


def test_a_traced_checkout_says_how_much_of_each_components_time_went_to_its_database(shop: Deployment) -> None:
    spans = traced_checkout(shop)
    components = {s.app for s in spans if s.kind == "server"}
    assert components == CHECKOUT_APPS[shop.topology]

    summary, hops = breakdown(spans)

    for component in components:
        in_db, own = summary[f"db_{component}_us"], summary[f"in_{component}_us"]
        if component in KEEPS_NO_DATA:
            assert in_db == 0, component
        else:
            assert in_db > 0, component
        assert in_db <= own, component  # part of the component's own time, never more
    assert all(s.db_us == 0 for s in spans if s.kind == "client")
    for hop in hops:  # every callee of a checkout reads or writes its data
        callee_db, callee = hop["callee_db_us"], hop["callee_us"]
        assert isinstance(callee_db, float)
        assert isinstance(callee, float)
        assert 0 < callee_db <= callee, hop


def test_a_runs_traces_and_hops_tables_carry_the_time_in_the_database(tiny_results: Path) -> None:
    results = load_results(tiny_results)
    traces = results.table("traces")
    for topology, components in CHECKOUT_APPS.items():
        checkouts = traces[(traces["topology"] == topology) & (traces["op"] == "checkout")]
        assert not checkouts.empty, topology
        for component in components:
            in_db, own = checkouts[f"db_{component}_us"], checkouts[f"in_{component}_us"]
            assert ((in_db == 0) if component in KEEPS_NO_DATA else (in_db > 0)).all(), (topology, component)
            assert (in_db <= own).all(), (topology, component)
    hops = results.table("hops")
    assert hops["callee_db_us"].notna().all()  # every call's callee wrote its span
    assert (hops["callee_db_us"] >= 0).all()
    assert (hops["callee_db_us"] <= hops["callee_us"]).all()
    checkout_hops = hops[hops["op"] == "checkout"]
    assert not checkout_hops.empty
    assert (checkout_hops["callee_db_us"] > 0).all()

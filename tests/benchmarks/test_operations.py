"""Each public operation, timed on every topology in-process and over sockets: one benchmark group per operation.

``pytest tests/benchmarks --benchmark-only --benchmark-group-by=group`` prints, for each operation, the topologies side
by side (``test_checkout[monolith-inprocess]``, ``test_checkout[microservices-sockets]``, ...). In a plain ``pytest``
run (``--benchmark-disable`` in addopts) each benchmark runs its operation once, as a test: the status is asserted on
every call, so a broken operation fails here as well as in the contract suite.

The topologies run with the sockets mark only for the socket variants (see ``variant_params``), so ``-m "not sockets"``
still benchmarks the monolith and the colocated services in-process.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from tests.benchmarks.conftest import Api, Target, checkout_body, checkout_headers


def operation(group: str) -> pytest.MarkDecorator:
    """A benchmark group per operation; a short warm-up so first-call costs (caches, pools) are not timed."""
    return pytest.mark.benchmark(group=group, warmup=True, warmup_iterations=20)


def measure(benchmark: BenchmarkFixture, target: Target, call: Callable[[], None]) -> None:
    # Saved runs (--benchmark-autosave) keep the topology and mode as data, not only inside the test name.
    benchmark.extra_info.update(topology=target.topology, mode=target.mode)
    benchmark(call)


def get(api: Api, path: str) -> Callable[[], None]:
    def call() -> None:
        status, body = api.request("GET", path)
        assert status == 200, body

    return call


def checkout(target: Target) -> Callable[[], None]:
    """A fresh Idempotency-Key on every call (a repeated key would time a lookup, not a checkout)."""
    serial = itertools.count()
    users, products = target.checkout_users, target.products

    def call() -> None:
        n = next(serial)
        body = checkout_body(users[n % len(users)], products[n % len(products)])
        status, reply = target.api.request("POST", "/orders", body, checkout_headers(f"bench-{target.run_token}-{n}"))
        assert status == 201, reply

    return call


@operation("healthz")
def test_healthz(benchmark: BenchmarkFixture, target: Target) -> None:
    """The floor: client, framework and front process, no shop logic. Subtract it to read the others."""
    measure(benchmark, target, get(target.api, "/healthz"))


@operation("browse-catalog")
def test_browse_catalog(benchmark: BenchmarkFixture, target: Target) -> None:
    measure(benchmark, target, get(target.api, "/products?limit=20&offset=20"))


@operation("view-product")
def test_view_product(benchmark: BenchmarkFixture, target: Target) -> None:
    measure(benchmark, target, get(target.api, "/products/7"))


@operation("view-user")
def test_view_user(benchmark: BenchmarkFixture, target: Target) -> None:
    measure(benchmark, target, get(target.api, f"/users/{target.user_id}"))


@operation("view-order")
def test_view_order(benchmark: BenchmarkFixture, target: Target) -> None:
    measure(benchmark, target, get(target.api, f"/orders/{target.order_id}"))


@operation("list-notifications")
def test_list_notifications(benchmark: BenchmarkFixture, target: Target) -> None:
    measure(benchmark, target, get(target.api, f"/users/{target.reader_id}/notifications"))


# Last in the module, on purpose: each checkout queues a notification that a background worker then delivers, and that
# work should not land in the timings of the read operations of the same topology.
@operation("checkout")
def test_checkout(benchmark: BenchmarkFixture, target: Target) -> None:
    measure(benchmark, target, checkout(target))

"""The shop's operation mix over the public API, as a load-generator workload.

Five operations, drawn by weight from a seeded RNG:

* ``browse``: ``GET /products?limit=20&offset=k``, a random catalog page;
* ``product``: ``GET /products/{id}``;
* ``user``: ``GET /users/{id}``;
* ``checkout``: ``POST /orders`` for a random user with 1..3 distinct products of quantity 1..2, with a fresh
  ``Idempotency-Key``;
* ``order``: ``GET /orders/{id}`` of an order this workload created; a checkout instead while there is none.

For a given seed the sequence of requests is the same run after run, given the same responses (``order`` picks
among the orders created so far). Idempotency keys are ``{key_prefix}-{n}``; the prefix is random by default, so that
a second run against the same database never replays the first run's checkouts (a replay is cheaper than a
checkout and would flatter the figures). Pass ``key_prefix`` to make the keys reproducible too.

Every workload here can run in generator processes of their own (``bench.load.loadgen.RemoteWorkload``): it
describes itself with a small picklable ``WorkloadSource``, and takes back what the processes learnt. A shop
workload run by one process continues exactly where the harness's copy stands (random state, next idempotency key,
orders known) and the harness's copy then continues where that process stopped: a workload reused across runs
behaves as if it had run here. With several processes each draws from its own seed (derived from the workload's
generator) and uses its own key prefix (``{key_prefix}.{process}``), so that no two of them replay a key.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import random
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec

from bench.load.loadgen import RemoteWorkload, Request, Workload, WorkloadSource

OPS: Final = ("browse", "product", "user", "checkout", "order")
#: The operations a client may safely send again after a failure: the reads, and the checkout, which carries an
#: Idempotency-Key (the same key twice gives the same order and charges once).
SAFE_TO_RETRY: Final = frozenset(OPS)

#: Named operation mixes (relative weights).
MIXES: Final[Mapping[str, Mapping[str, float]]] = {
    "default": {"browse": 30, "product": 30, "user": 15, "checkout": 15, "order": 10},
    "browse-heavy": {"browse": 45, "product": 40, "user": 7, "checkout": 4, "order": 4},
    "checkout-heavy": {"browse": 15, "product": 15, "user": 10, "checkout": 45, "order": 15},
}

PAGE_SIZE: Final = 20
_JSON: Final = ("Content-Type", "application/json")


class _Line(msgspec.Struct):
    product_id: int
    quantity: int


class _Checkout(msgspec.Struct):
    user_id: int
    items: list[_Line]


class _Created(msgspec.Struct):
    """The one field of a checkout response that the workload reads; the rest is ignored unparsed."""

    id: int


_encode = msgspec.json.Encoder().encode
_decode_created = msgspec.json.Decoder(_Created).decode


def resolve_mix(mix: str | Mapping[str, float]) -> dict[str, float]:
    """A mix by name, or a weight mapping checked against ``OPS`` (missing ops weigh 0)."""
    weights = dict(MIXES[mix]) if isinstance(mix, str) else dict(mix)
    unknown = set(weights) - set(OPS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}; known: {OPS}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum: {weights}")
    return {op: float(weights.get(op, 0.0)) for op in OPS}


class ShopWorkload:
    """The shop's weighted operation mix (see the module docstring); implements ``bench.load.loadgen.Workload``."""

    def __init__(
        self,
        n_users: int,
        n_products: int,
        mix: str | Mapping[str, float] = "default",
        seed: int = 0,
        auth_headers: Iterable[tuple[str, str]] = (),
        key_prefix: str | None = None,
    ) -> None:
        if n_users < 1 or n_products < 1:
            raise ValueError("n_users and n_products must be >= 1")
        self.n_users, self.n_products = n_users, n_products
        self.weights = resolve_mix(mix)
        self._ops = [op for op in OPS if self.weights[op] > 0]
        self._cumulative = list(itertools.accumulate(self.weights[op] for op in self._ops))
        self._rng = random.Random(seed)
        self._headers = tuple(auth_headers)
        self._key_prefix = key_prefix if key_prefix is not None else uuid.uuid4().hex[:12]
        self._next_key = 1
        self.order_ids: list[int] = []
        self._get_cache: dict[str, Request] = {}

    def describe(self, parts: int) -> ShopSource:
        """This workload's state for ``parts`` generator processes (see the module docstring)."""
        return ShopSource(
            n_users=self.n_users,
            n_products=self.n_products,
            weights=dict(self.weights),
            auth_headers=self._headers,
            key_prefix=self._key_prefix,
            next_key=self._next_key,
            order_ids=array("q", self.order_ids),
            parts=parts,
            rng_state=self._rng.getstate() if parts == 1 else None,
            seed=self._rng.getrandbits(63) if parts > 1 else 0,
        )

    def absorb(self, outcomes: list[object]) -> None:
        """Continue where the generator processes stopped: their random state (one process), keys and orders."""
        for outcome in outcomes:
            state, next_key, order_ids = cast(ShopOutcome, outcome)
            if state is not None:
                self._rng.setstate(state)
            self._next_key = max(self._next_key, next_key)
            self.order_ids.extend(order_ids)

    def load_started(self, t0: float) -> None:
        """Nothing to do at the load's start."""

    def next_request(self) -> Request:
        """The next request of the mix."""
        op = self._ops[bisect.bisect_right(self._cumulative, self._rng.random() * self._cumulative[-1])]
        if op == "browse":
            pages = (self.n_products + PAGE_SIZE - 1) // PAGE_SIZE
            return self._get("browse", f"/products?limit={PAGE_SIZE}&offset={self._rng.randrange(pages) * PAGE_SIZE}")
        if op == "product":
            return self._get("product", f"/products/{self._rng.randint(1, self.n_products)}")
        if op == "user":
            return self._get("user", f"/users/{self._rng.randint(1, self.n_users)}")
        if op == "order" and self.order_ids:  # not cached: there are as many paths as orders
            return Request("order", "GET", f"/orders/{self._rng.choice(self.order_ids)}", headers=self._headers)
        return self._checkout()

    def on_response(self, request: Request, status: int, body: bytes) -> None:
        """Remember the id of every order a checkout created (201; 200 for a replayed key)."""
        if request.op == "checkout" and status in (200, 201):
            # Not the shape we expected: the order simply is not viewed later.
            with contextlib.suppress(msgspec.DecodeError):
                self.order_ids.append(_decode_created(body).id)

    def _get(self, op: str, path: str) -> Request:
        # These GETs repeat over n_users + n_products + pages paths: build each Request once.
        request = self._get_cache.get(path)
        if request is None:
            request = self._get_cache[path] = Request(op, "GET", path, headers=self._headers)
        return request

    def _checkout(self) -> Request:
        rng = self._rng
        products = rng.sample(range(1, self.n_products + 1), min(rng.randint(1, 3), self.n_products))
        body = _Checkout(
            user_id=rng.randint(1, self.n_users),
            items=[_Line(product_id=p, quantity=rng.randint(1, 2)) for p in products],
        )
        key = ("Idempotency-Key", f"{self._key_prefix}-{self._next_key}")
        self._next_key += 1
        return Request("checkout", "POST", "/orders", _encode(body), (_JSON, key, *self._headers))


#: What a shop workload's generator process sends back: its random state (one process only), its next key number
#: and the ids of the orders it created.
ShopOutcome = tuple[tuple[Any, ...] | None, int, "array[int]"]


@dataclass(frozen=True)
class ShopSource:
    """A ``ShopWorkload`` as a generator process rebuilds it (``WorkloadSource``)."""

    n_users: int
    n_products: int
    weights: dict[str, float]
    auth_headers: tuple[tuple[str, str], ...]
    key_prefix: str
    next_key: int
    order_ids: array[int]
    parts: int
    rng_state: tuple[Any, ...] | None  # one process: continue the harness's generator exactly
    seed: int  # several: process p draws from a generator seeded with (seed, p)

    def build(self, part: int, parts: int) -> ShopWorkload:
        one = parts == 1
        workload = ShopWorkload(
            self.n_users,
            self.n_products,
            mix=self.weights,
            auth_headers=self.auth_headers,
            key_prefix=self.key_prefix if one else f"{self.key_prefix}.{part}",
        )
        if one and self.rng_state is not None:
            workload._rng.setstate(self.rng_state)
        else:
            workload._rng.seed(f"{self.seed}/{part}")
        workload._next_key = self.next_key
        workload.order_ids = list(self.order_ids)
        return workload

    def outcome(self, workload: Workload) -> ShopOutcome:
        shop = cast(ShopWorkload, workload)
        state = shop._rng.getstate() if self.parts == 1 else None
        return state, shop._next_key, array("q", shop.order_ids[len(self.order_ids) :])


@dataclass(frozen=True)
class FixedSource:
    """A ``FixedWorkload`` as a generator process rebuilds it; its outcome counts the statuses it was told about."""

    request: Request

    def build(self, part: int, parts: int) -> FixedWorkload:
        return FixedWorkload(self.request)

    def outcome(self, workload: Workload) -> dict[int, int]:
        return dict(cast(FixedWorkload, workload).statuses)


class FixedWorkload:
    """The same request forever; counts the status of every finished request (0: no response)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.statuses: Counter[int] = Counter()

    def next_request(self) -> Request:
        return self.request

    def on_response(self, request: Request, status: int, body: bytes) -> None:
        self.statuses[status] += 1

    def describe(self, parts: int) -> WorkloadSource:
        return FixedSource(self.request)

    def absorb(self, outcomes: list[object]) -> None:
        for outcome in outcomes:
            self.statuses.update(cast(dict[int, int], outcome))

    def load_started(self, t0: float) -> None:
        """Nothing to do at the load's start."""


class HelloWorkload(FixedWorkload):
    """``GET /`` forever: the trivial endpoint of the baselines."""

    def __init__(self) -> None:
        super().__init__(Request("hello", "GET", "/"))


class StartsOnFirstRequest:
    """Wraps a workload and calls ``start`` at the load's time zero.

    The generator opens its connections before its clock starts; something started here (a fault timer, a sampler)
    shares the generator's clock. In this interpreter ``start`` runs when the generator asks for the first request;
    when the inner workload runs in generator processes (it is a ``RemoteWorkload``), ``start`` runs in the harness
    at the time zero the processes share, which ``t0`` then holds (a ``time.monotonic()`` value).
    """

    def __init__(self, inner: Workload, start: Callable[[], None]) -> None:
        self.inner, self._start = inner, start
        self.started = False
        self.t0: float | None = None

    def describe(self, parts: int) -> WorkloadSource | None:
        """The inner workload's description; None (run here) if it has none."""
        return self.inner.describe(parts) if isinstance(self.inner, RemoteWorkload) else None

    def absorb(self, outcomes: list[object]) -> None:
        assert isinstance(self.inner, RemoteWorkload)
        self.inner.absorb(outcomes)

    def load_started(self, t0: float) -> None:
        """Run ``start`` (the generator processes' clock has just started at ``t0``)."""
        self.t0, self.started = t0, True
        self._start()

    def next_request(self) -> Request:
        if not self.started:
            self.started = True
            self._start()
        return self.inner.next_request()

    def on_response(self, request: Request, status: int, body: bytes) -> None:
        self.inner.on_response(request, status, body)

"""Schemathesis against the OpenAPI document of every topology's public API and of every internal service.

No input, however malformed, gets a 500. Each target's document is loaded from the
running app's own ``GET /openapi.json``; for every operation schemathesis generates schema-valid (positive) and
schema-invalid (negative) requests, and every response is checked: no 5xx, a documented status, the documented content
type and body schema, and invalid input refused with a 4xx.

Positive requests also go to resources that exist (the seeded users and products, the users and orders the fuzz creates
itself), because a generated path parameter almost never names one and the success bodies would otherwise go unchecked.

Generation is derandomized and the example database is off, so a run is repeatable (see :func:`config`). The monolith
and colocated topologies run in-process (schemathesis calls the ASGI app and runs its lifespan in its own event-loop
thread, auth off); the microservices public API and each internal service run as real processes with auth on, so the
fuzz presents the deployment's API key, or to a service the credential of a component that service admits for the
operation. Fuzzing writes data (registrations, deposits, orders, reservations, charges), so every target gets a
deployment of its own.

Failures the fuzz found in the application are kept, one request each, in ``test_regressions.py``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bench.system.deploy import Deployment, deploy
from plumbing.auth import CREDENTIAL_HEADER, SERVICE_SECRET_ENV, AuthConfig
from plumbing.host import ProcessApp
from plumbing.topology import COMPONENTS, PUBLIC, SERVICES, TOPOLOGIES, layout, make_config
from tests.shopfixtures import TEST_SEED

pytestmark = pytest.mark.sockets

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Any]
Credentials = Callable[[Operation], Mapping[str, str]]
REFUSED = frozenset({401, 403})
E = TypeVar("E")

# The floor for each topology's public API.
MIN_PUBLIC_REQUESTS = 1_000
# Hypothesis examples per operation and kind of request (negative; positive; positive on an existing resource).
# The public API has 4 operations that can be sent invalid input, 8 in all, 5 with an id in the path: at most
# (4 + 8 + 5) x 80 = 1,360 requests; hypothesis stops early once it has tried every id there is to try.
EXAMPLES = 80
# The services have no floor of their own; fewer examples keep the module within CI's budget.
INTERNAL_EXAMPLES = 40
# Ids that may name existing resources: the seeded users and products, and users and orders the fuzz creates itself.
KNOWN_IDS = {
    "user_id": range(1, 2 * TEST_SEED.users + 1),
    "product_id": range(1, TEST_SEED.products + 1),
    "order_id": range(1, 61),
}
# What "conforms" means here. positive_data_acceptance is left out: a document cannot state every business rule (a
# charge replayed with another amount is refused by design); the gaps it finds are kept in test_regressions.py.
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    # Every example is a real request; slow or filtered generation is expected here, not a sign of a bad strategy.
    suppress_health_check=list(HealthCheck),
)
PATH_PARAM = re.compile(r"{(\w+)}")
# Schemathesis' negative values for an integer parameter are values of other JSON types (arrays, objects, null, floats,
# random text) and integers out of range: never text shaped like a number, so a server that checked integers by hand
# (``isdigit`` then ``int``) passed while ``limit=--5`` was a 500 (docs/hardening.md). Near-miss numerals close the gap:
# every integer parameter (query and path) is also sent generated digits in every one of these shapes (signs, zeros,
# spaces, fractions, exponents), and must be refused exactly when the text is not an integer the document allows.
NEAR_PREFIXES = ("", "-", "--", "+", "-+", "+-", " ", "0", "00", "-0", "\u0665")
NEAR_SUFFIXES = ("", ".", ".0", "e1", "E+1", " ", "-", "x", "\u0665")
NEAR_MISS_EXAMPLES = 3
INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
# The refusal of a parameter the document does not allow, by where it is: a path that names nothing is not found.
REFUSAL = {"query": 422, "path": 404}


def no_credentials(operation: Operation) -> Mapping[str, str]:
    return {}


@dataclass
class Target:
    """One API under fuzz: its document, where requests go, and how many were sent per operation and status.

    ``base_url`` is None for an in-process app (the schema holds the app); ``credentials`` gives the headers that let
    a request of an operation in.
    """

    name: str
    schema: BaseSchema
    base_url: str | None = None
    credentials: Credentials = no_credentials
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    admitted: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.session = requests.Session() if self.base_url is not None else None

    def check(self, case: Case) -> None:
        """Send ``case`` and validate the response; a failure raises with the request as a curl command."""
        if any(value == [] for value in (case.query or {}).values()):
            # A query parameter whose value is an empty list puts nothing on the wire (requests drops it), so such a
            # case claims an undeclared parameter that the server never sees and would be a false "accepted negative
            # data" (the class of schemathesis#3730): it is not the request it says it is, so it is discarded.
            reject()
        headers = dict(self.credentials(case.operation)) or None
        response = case.call(base_url=self.base_url, session=self.session, headers=headers)
        self.sent[case.operation.label] += 1
        self.statuses[response.status_code] += 1
        self.admitted[case.operation.label] += response.status_code not in REFUSED
        case.validate_response(response, checks=CHECKS, headers=headers)

    def check_near_miss(self, item: tuple[Case, str]) -> None:
        """Send ``case`` with each integer parameter in turn replaced by ``digits`` in every near-miss shape: refused
        exactly when the document refuses the text, and never with a 5xx."""
        case, digits = item
        query, path = dict(case.query or {}), dict(case.path_parameters or {})
        for location, name, schema in integer_parameters(case.operation):
            for prefix in NEAR_PREFIXES:
                for suffix in NEAR_SUFFIXES:
                    text = prefix + digits + suffix
                    case.query = {**query, name: text} if location == "query" else query
                    case.path_parameters = {**path, name: text} if location == "path" else path
                    self.check_text(case, location, name, schema, text)

    def check_text(self, case: Case, location: str, name: str, schema: Mapping[str, Any], text: str) -> None:
        headers = dict(self.credentials(case.operation)) or None
        response = case.call(base_url=self.base_url, session=self.session, headers=headers)
        self.sent[case.operation.label] += 1
        self.statuses[response.status_code] += 1
        allowed = INTEGER.fullmatch(text) is not None and schema["minimum"] <= int(text) <= schema["maximum"]
        request = f"{case.operation.label} with {location} parameter {name}={text!r}"
        assert response.status_code < 500, f"{request}: {response.status_code} {response.text}"
        if not allowed:
            # 422 too: a positive body may still be refused first (an integral float, refused on purpose).
            refusals = {REFUSAL[location], 422}
            assert response.status_code in refusals, f"{request}: {response.status_code} {response.text}"
        elif location == "query":
            assert response.status_code != 422, f"{request}: {response.status_code} {response.text}"

    def assert_handlers_reached(self) -> None:
        """Every operation was fuzzed, and not only at the door: some requests of each got past authentication."""
        every = {operation.label for operation in self.operations()}
        assert every == {label for label, n in self.admitted.items() if n > 0}, self.summary()

    def operations(self) -> list[Operation]:
        return [operation for methods in self.schema.values() for operation in methods.values()]

    def total(self) -> int:
        return sum(self.sent.values())

    def summary(self) -> str:
        ops = ", ".join(f"{label}: {n}" for label, n in self.sent.items())
        return f"{self.name}: {self.total()} requests ({ops}); statuses {dict(sorted(self.statuses.items()))}"

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def strategies(operation: Operation) -> Iterator[st.SearchStrategy[Case]]:
    """Negative requests, positive requests, and (for a path with ids) positive requests on existing resources."""
    if can_be_invalid(operation):
        yield operation.as_strategy(GenerationMode.NEGATIVE)
    yield operation.as_strategy(GenerationMode.POSITIVE)
    names = PATH_PARAM.findall(operation.path)
    if names and all(name in KNOWN_IDS for name in names):
        ids = st.fixed_dictionaries({name: st.sampled_from(KNOWN_IDS[name]).map(str) for name in names})
        yield ids.flatmap(lambda path: operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path))


def integer_parameters(operation: Operation) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(location, name, schema)`` of each integer parameter of ``operation`` in its path or query."""
    found = []
    for location, params in (("path", operation.path_parameters), ("query", operation.query)):
        for param in params:
            schema = param.definition.get("schema", {})
            if schema.get("type") == "integer":
                found.append((location, param.name, schema))
    return found


def near_misses(operation: Operation) -> st.SearchStrategy[tuple[Case, str]]:
    """Positive requests, and the digits to shape into near-miss numerals (see :data:`NEAR_PREFIXES`)."""
    return st.tuples(operation.as_strategy(GenerationMode.POSITIVE), st.from_regex(r"\A[0-9]{1,21}\Z"))


def can_be_invalid(operation: Operation) -> bool:
    """Whether a request can break the document: an untyped path segment cannot (any string is one)."""
    typed_path = any(p.definition.get("schema") != {"type": "string"} for p in operation.path_parameters)
    return bool(operation.body) or len(operation.query) > 0 or len(operation.headers) > 0 or typed_path


def run_examples(strategy: st.SearchStrategy[E], check: Callable[[E], None], max_examples: int) -> None:
    """Check up to ``max_examples`` cases drawn from ``strategy``; a failure is shrunk to a minimal request first."""

    @settings(FUZZ_SETTINGS, max_examples=max_examples)
    @given(case=strategy)
    def check_one(case: E) -> None:
        check(case)

    check_one()


def fuzz(target: Target, max_examples: int) -> None:
    """Every operation of ``target``'s document, every kind of request, up to ``max_examples`` of each."""
    for operation in target.operations():
        for strategy in strategies(operation):
            run_examples(strategy, target.check, max_examples)
        if integer_parameters(operation):
            run_examples(near_misses(operation), target.check_near_miss, min(max_examples, NEAR_MISS_EXAMPLES))


def config() -> schemathesis.Config:
    """Loading and transport options; what is generated is decided by the hypothesis settings above.

    Schemathesis would also mine an in-process app's modules for constants to send; that is off, so that in-process
    and socket targets are fuzzed alike. (Hypothesis itself still draws some values from the constants of loaded local
    modules: the same tree and the same command send the same requests, but a code change may change them.)
    """
    return schemathesis.Config.from_dict({"request-timeout": 10, "analysis": {"constants": {"enabled": False}}})


@contextmanager
def inprocess_target(topology: str, run_dir: Path) -> Iterator[Target]:
    """The topology's public process as an ASGI app; its lifespan and every request run in schemathesis' loop thread."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: 1 for name, _ in layout(topology)}  # no socket is opened: every peer lives in this process
    run = make_config(topology, run_dir, ports, TEST_SEED, "aiohttp")
    app = ProcessApp(run, run.process_of(PUBLIC[topology]))
    try:
        # Fetching the document through the app starts the app's lifespan: start-up, seeding, background loops.
        yield Target(topology, schemathesis.openapi.from_asgi("/openapi.json", app, config=config()))
    finally:
        asgi.shutdown_lifespans()


@contextmanager
def socket_target(name: str, base_url: str, credentials: Credentials = no_credentials) -> Iterator[Target]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config())
    target = Target(name, schema, base_url, credentials)
    try:
        yield target
    finally:
        target.close()


@contextmanager
def public_target(topology: str, run_dir: Path) -> Iterator[Target]:
    """The public API of ``topology``: in-process unless it is made of several processes."""
    if topology != "microservices":
        with inprocess_target(topology, run_dir) as target:
            yield target
        return
    with deploy(topology, run_dir, seed=TEST_SEED) as deployment:
        api_key = dict(deployment.auth_headers)
        with socket_target(topology, deployment.public_url, lambda operation: api_key) as target:
            yield target


def service_credentials(deployment: Deployment, base_url: str) -> Credentials:
    """For each operation, the credential of a component the service admits there, found by one probe request.

    The document does not say who may call what, and a map kept here would drift from the services' own.
    """
    assert deployment.secrets is not None
    auth = AuthConfig.from_env({SERVICE_SECRET_ENV: deployment.secrets.service_secret})
    found: dict[str, dict[str, str]] = {}

    def admitted(operation: Operation) -> dict[str, str]:
        url = base_url + PATH_PARAM.sub("0", operation.path)
        for component in COMPONENTS:
            headers = {CREDENTIAL_HEADER: auth.credential(component) or ""}
            if requests.request(operation.method, url, headers=headers, timeout=10).status_code not in REFUSED:
                return headers
        raise AssertionError(f"{operation.label} admits no component of the shop")

    def credentials(operation: Operation) -> Mapping[str, str]:
        if operation.label not in found:
            found[operation.label] = admitted(operation)
        return found[operation.label]

    return credentials


@pytest.fixture(scope="module")
def internal_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A microservices deployment of its own, whose services are called directly as the orders service would."""
    with deploy("microservices", tmp_path_factory.mktemp("internal"), seed=TEST_SEED) as deployment:
        yield deployment


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_public_api_survives_fuzzing(topology: str, tmp_path: Path) -> None:
    with public_target(topology, tmp_path / topology) as target:
        fuzz(target, EXAMPLES)
    print(target.summary())
    assert target.total() >= MIN_PUBLIC_REQUESTS, target.summary()
    target.assert_handlers_reached()


@pytest.mark.parametrize("service", SERVICES)
def test_internal_api_survives_fuzzing(service: str, internal_deployment: Deployment) -> None:
    base_url = f"http://127.0.0.1:{internal_deployment.config.process(service).port}"
    with socket_target(service, base_url, service_credentials(internal_deployment, base_url)) as target:
        fuzz(target, INTERNAL_EXAMPLES)
    print(target.summary())
    target.assert_handlers_reached()

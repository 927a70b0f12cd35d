"""Requests that fuzzing found answered wrongly, kept one by one as plain tests.

Found by schemathesis's ``unsupported_method`` and ``positive_data_acceptance`` checks, which a plain ``st run`` against
``/openapi.json`` runs. A case marked ``xfail(strict=True)`` is a known defect: the mark comes off with the fix, and
strictness makes the suite say so when a fix lands. The shared plumbing and the shared domain answer these requests,
so the in-process monolith and colocated topologies stand for every topology.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import jsonschema_rs
import pytest

from shop.orders import MAX_KEY
from tests.shopfixtures import Shop, inprocess_shop

JSON = "application/json"
ORDER = {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}


@pytest.fixture(params=["monolith", "colocated"])
async def local_shop(request: pytest.FixtureRequest) -> AsyncIterator[Shop]:
    async with inprocess_shop(request.param) as shop:
        yield shop


@pytest.mark.parametrize(("method", "path", "allowed"), [("DELETE", "/orders", "POST"), ("TRACE", "/users/1", "GET")])
async def test_method_not_allowed_names_the_allowed_methods(
    local_shop: Shop, method: str, path: str, allowed: str
) -> None:
    reply = await local_shop.client.request(method, path)
    assert reply.status_code == 405
    assert allowed in {m.strip() for m in reply.headers.get("allow", "").split(",")}


def document_allows(
    document: Mapping[str, Any], method: str, template: str, headers: Mapping[str, str], body: object
) -> bool:
    """Whether the OpenAPI ``document`` allows this request's headers and JSON body."""
    operation = document["paths"][template][method.lower()]
    for param in operation.get("parameters", []):
        value = headers.get(param["name"]) if param["in"] == "header" else None
        if value is None:
            if param["in"] == "header" and param["required"]:
                return False
        elif not valid(document, param["schema"], value):
            return False
    return "requestBody" not in operation or valid(document, operation["requestBody"]["content"][JSON]["schema"], body)


def valid(document: Mapping[str, Any], schema: Mapping[str, Any], value: object) -> bool:
    # A $ref points into the document's components: keep them beside the schema so that it resolves.
    return bool(jsonschema_rs.validator_for({**schema, "components": document["components"]}).is_valid(value))


# (method, path template, path, headers, body): requests whose refusal the document must announce.
REQUESTS = [
    pytest.param("POST", "/users", "/users", {}, {"email": "ann@example.com", "name": "Ann"}, id="valid-user"),
    pytest.param("POST", "/users/{user_id}/deposits", "/users/1/deposits", {}, {"amount_cents": 0}, id="zero-deposit"),
    pytest.param(
        "POST",
        "/users",
        "/users",
        {},
        {"email": "000", "name": "Ann"},
        id="email-without-at",
    ),
    pytest.param(
        "POST",
        "/users",
        "/users",
        {},
        {"email": "blank@example.com", "name": "   "},
        id="blank-name",
    ),
    pytest.param("POST", "/users", "/users", {}, {"email": "a@b@example.com", "name": "Ann"}, id="two-at-signs"),
    pytest.param(
        "POST",
        "/orders",
        "/orders",
        {"Idempotency-Key": ""},
        ORDER,
        id="empty-idempotency-key",
    ),
    pytest.param(
        "POST",
        "/orders",
        "/orders",
        {"Idempotency-Key": "k" * (MAX_KEY + 1)},
        ORDER,
        id="long-idempotency-key",
    ),
]


@pytest.mark.parametrize(("method", "template", "path", "headers", "body"), REQUESTS)
async def test_server_refuses_only_what_its_document_refuses(
    local_shop: Shop, method: str, template: str, path: str, headers: dict[str, str], body: object
) -> None:
    document = (await local_shop.client.get("/openapi.json")).json()
    reply = await local_shop.client.request(method, path, json=body, headers=headers)
    assert reply.status_code < 500, reply.text
    if reply.status_code == 422:
        assert not document_allows(document, method, template, headers, body), reply.text


async def test_an_integral_float_is_refused_on_purpose(local_shop: Shop) -> None:
    """100.0 is an integer to JSON Schema, so the document cannot refuse it; the server does, by decision: money and
    ids are integers, and a float in their place is a client bug worth a 422 rather than a silent conversion."""
    reply = await local_shop.client.post("/users/1/deposits", json={"amount_cents": 100.0})
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid_input"

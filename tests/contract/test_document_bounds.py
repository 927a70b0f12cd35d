"""The server refuses only what its document refuses: inputs built at the bounds the document states (lengths,
minimums, maximums, item counts), checked valid against the document itself, are never a 422 on any topology.

Each string is made of characters that stress a server-side rule differing from the schema: one whose lowercase is two
code points ("İ"), one that grows when case-folded ("ß"), white space of one regex dialect and not the other.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import jsonschema_rs
import pytest

from tests.shopfixtures import Shop

pytestmark = pytest.mark.sockets

JSON = "application/json"
STRESS = ("a", "İ", "ß", "\u200b", "\ufeff")
SERIAL = itertools.count()


def component(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return document["components"]["schemas"][name]


def allowed(document: Mapping[str, Any], schema: Mapping[str, Any], value: object) -> bool:
    return bool(jsonschema_rs.validator_for({**schema, "components": document["components"]}).is_valid(value))


def operation(document: Mapping[str, Any], method: str, path: str) -> Mapping[str, Any]:
    return document["paths"][path][method.lower()]


def parameter(document: Mapping[str, Any], method: str, path: str, name: str) -> Mapping[str, Any]:
    params = operation(document, method, path)["parameters"]
    return next(p["schema"] for p in params if p["name"] == name)


def users_at_the_bounds(document: Mapping[str, Any], tag: str) -> list[dict[str, str]]:
    props = component(document, "NewUser")["properties"]
    longest_email, longest_name = props["email"]["maxLength"], props["name"]["maxLength"]
    domain = "@example.com"
    bodies = []
    for i, c in enumerate(STRESS):
        local = (f"{tag}{i}" + c * longest_email)[: longest_email - len(domain)]
        bodies.append({"email": local + domain, "name": c * longest_name})
    # Surrounding white space counts in the length as sent, and is ignored by the rules.
    address = f"{tag}@x.y"
    bodies.append({"email": " " * (longest_email - len(address) - 1) + address + " ", "name": " N "})
    return bodies


async def test_registrations_at_the_documented_bounds_are_accepted(shop: Shop) -> None:
    document = (await shop.client.get("/openapi.json")).json()
    schema = operation(document, "POST", "/users")["requestBody"]["content"][JSON]["schema"]
    for body in users_at_the_bounds(document, f"b{next(SERIAL)}{shop.mode}"):
        assert allowed(document, schema, body), body
        reply = await shop.client.post("/users", json=body)
        assert reply.status_code == 201, (body, reply.text)


async def test_amounts_counts_and_ids_at_the_documented_bounds_are_not_refused_as_invalid(shop: Shop) -> None:
    document = (await shop.client.get("/openapi.json")).json()
    amount = component(document, "NewDeposit")["properties"]["amount_cents"]
    user_id = await shop.new_user()
    for cents in (amount["minimum"], amount["maximum"]):
        reply = await shop.client.post(f"/users/{user_id}/deposits", json={"amount_cents": cents})
        assert reply.status_code == 201, reply.text

    order = component(document, "NewOrder")["properties"]
    line = component(document, "LineIn")["properties"]
    most_lines = order["items"]["maxItems"]
    assert shop.seed.products >= most_lines
    lines = [{"product_id": p, "quantity": 1} for p in range(1, most_lines + 1)]
    lines[0]["quantity"] = line["quantity"]["maximum"]
    key_schema = parameter(document, "POST", "/orders", "Idempotency-Key")
    # An unfunded buyer: the order is refused for its wallet (402), after its input was accepted, and takes no stock
    # (other contract tests read the stock of products they do not buy).
    buyer = await shop.new_user()
    for key in ("~" * key_schema["maxLength"], f"{shop.mode} {buyer} k", "!"):
        body = {"user_id": buyer, "items": lines}
        assert allowed(document, key_schema, key)
        assert allowed(document, {"$ref": "#/components/schemas/NewOrder"}, body)
        reply = await shop.client.post("/orders", json=body, headers={"Idempotency-Key": key})
        assert reply.status_code == 402, reply.text

    biggest_id = line["product_id"]["maximum"]
    reply = await shop.client.post(
        "/orders",
        json={"user_id": biggest_id, "items": [{"product_id": biggest_id, "quantity": 1}]},
        headers={"Idempotency-Key": "biggest-ids"},
    )
    assert reply.status_code == 404, reply.text
    for path in ("/users/{user_id}", "/products/{product_id}", "/orders/{order_id}"):
        name = path.split("{")[1].rstrip("}")
        biggest = parameter(document, "GET", path, name)["maximum"]
        assert (await shop.client.get(path.replace(f"{{{name}}}", str(biggest)))).status_code == 404

    for name in ("limit", "offset"):
        bounds = parameter(document, "GET", "/products", name)
        for value in (bounds["minimum"], bounds["maximum"]):
            reply = await shop.client.get("/products", params={name: value})
            assert reply.status_code == 200, reply.text

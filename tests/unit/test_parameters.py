"""Query and path parameters go through the validator of bodies: a parameter is refused exactly when the document's
schema refuses it, and a malformed one is a 422 (or, in a path, a 404), never an exception."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from plumbing.contract import MAX_OFFSET, PageQuery
from plumbing.web import NoQuery, parameters
from shop.errors import InvalidInput
from shop.inventory import MAX_PAGE

# An integer as JSON (and so as the document) writes it: no sign but one minus, no leading zero, no exponent.
INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
# Texts that look like numbers: signs, zeros, spaces, fractions and exponents around digits.
NEAR_INTEGERS = st.from_regex(r"\A[-+ 0]{0,3}[0-9]{1,21}(\.[0-9]{0,2})?([eE][-+]?[0-9]{1,2})?[ ]?\Z")


def allowed(text: str, lo: int, hi: int) -> bool:
    return INTEGER.fullmatch(text) is not None and lo <= int(text) <= hi


@given(text=st.one_of(NEAR_INTEGERS, st.text(max_size=8)))
@example(text="--5")
@example(text="--0")
@example(text="-0")
@example(text="1e3")
@example(text="5.0")
@example(text="+5")
@example(text="05")
@example(text="٥")
@example(text=str(MAX_OFFSET))
@example(text=str(MAX_OFFSET + 1))
@example(text="9" * 30)
def test_an_integer_parameter_is_accepted_exactly_when_the_document_allows_it(text: str) -> None:
    for name, lo, hi in (("limit", 1, MAX_PAGE), ("offset", 0, MAX_OFFSET)):
        if allowed(text, lo, hi):
            assert getattr(parameters([(name, text)], PageQuery, "query"), name) == int(text)
        else:
            with pytest.raises(InvalidInput):
                parameters([(name, text)], PageQuery, "query")


def test_the_document_states_the_bounds_the_validator_applies() -> None:
    schema = msgspec.json.schema(PageQuery)["$defs"]["PageQuery"]
    assert schema["properties"]["limit"] == {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 20}
    assert schema["properties"]["offset"] == {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "items",
    [
        [("limit", "1"), ("limit", "2")],
        [("other", "1")],
        [("limit", "")],
    ],
)
def test_repeated_unknown_and_empty_parameters_are_refused(items: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        parameters(items, PageQuery, "query")


def test_an_endpoint_without_query_refuses_any_parameter() -> None:
    assert parameters([], NoQuery, "query") == NoQuery()
    with pytest.raises(InvalidInput):
        parameters([("x", "1")], NoQuery, "query")

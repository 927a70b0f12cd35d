"""Users: registration rules (email normalisation, uniqueness, validation) and look-up."""

from __future__ import annotations

import sqlite3

import pytest

from shop.db import MAX_ID, UnitOfWork
from shop.errors import EmailTaken, InvalidInput, UserNotFound
from shop.users import MAX_EMAIL, MAX_NAME, WHITESPACE, User, Users, check_name, normalize_email


def register(conn: sqlite3.Connection, email: str, name: str) -> User:
    with UnitOfWork(conn) as uow:
        user = Users(conn).register(email, name)
        uow.commit()
    return user


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ann@example.org", "ann@example.org"),
        ("  Ann@Example.ORG \n", "ann@example.org"),
        ("a@b", "a@b"),
    ],
)
def test_normalize_email_strips_and_lowercases(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ann",
        "ann@",
        "@example.org",
        "an n@example.org",
        "ann@exa\tmple.org",
        "ann@\u00a0example.org",
        "a\x00nn@example.org",  # NUL: PostgreSQL's text cannot hold it, so neither engine takes it
    ],
)
def test_normalize_email_refuses_what_is_not_an_address(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(raw)


def test_email_length_limit_applies_after_stripping() -> None:
    longest = "a" * (MAX_EMAIL - len("@x.org")) + "@x.org"
    assert normalize_email(f"  {longest}  ") == longest
    with pytest.raises(InvalidInput):
        normalize_email("a" + longest)


def test_check_name_strips_and_bounds_length() -> None:
    assert check_name("  Ann Lee ") == "Ann Lee"
    assert check_name("x" * MAX_NAME) == "x" * MAX_NAME
    for bad in ("", " \t\n", "x" * (MAX_NAME + 1), "Ann\x00", "\x00"):
        with pytest.raises(InvalidInput):
            check_name(bad)


def test_register_stores_the_normalised_user(users_conn: sqlite3.Connection) -> None:
    user = register(users_conn, " Ann@Example.org ", "  Ann ")

    assert user == User(user.id, "ann@example.org", "Ann")
    assert Users(users_conn).get(user.id) == user
    assert Users(users_conn).count() == 1


def test_register_gives_distinct_ids(users_conn: sqlite3.Connection) -> None:
    first = register(users_conn, "ann@example.org", "Ann")
    second = register(users_conn, "bob@example.org", "Bob")

    assert first.id != second.id
    assert Users(users_conn).get(second.id).email == "bob@example.org"


def test_duplicate_email_is_refused_whatever_its_case(users_conn: sqlite3.Connection) -> None:
    register(users_conn, "ann@example.org", "Ann")

    with pytest.raises(EmailTaken) as refused:
        register(users_conn, "  ANN@example.ORG", "Another Ann")

    assert refused.value.code == "email_taken"
    assert Users(users_conn).count() == 1


@pytest.mark.parametrize(("email", "name"), [("not-an-email", "Ann"), ("ann@example.org", "   ")])
def test_invalid_registration_stores_nothing(users_conn: sqlite3.Connection, email: str, name: str) -> None:
    with pytest.raises(InvalidInput):
        register(users_conn, email, name)

    assert Users(users_conn).count() == 0


@pytest.mark.parametrize("user_id", [0, -1, 999, MAX_ID, MAX_ID + 1, -(2**70)])
def test_get_unknown_or_impossible_id_is_not_found(users_conn: sqlite3.Connection, user_id: int) -> None:
    register(users_conn, "ann@example.org", "Ann")

    with pytest.raises(UserNotFound):
        Users(users_conn).get(user_id)


def test_seed_gives_ids_from_one(users_conn: sqlite3.Connection) -> None:
    with UnitOfWork(users_conn) as uow:
        Users(users_conn).seed([("a@seed.example", "A"), ("b@seed.example", "B")])
        uow.commit()

    assert Users(users_conn).get(1) == User(1, "a@seed.example", "A")
    assert Users(users_conn).get(2) == User(2, "b@seed.example", "B")


def test_email_length_is_that_of_the_text_as_sent_not_of_its_lowercase() -> None:
    sent = "İ" * (MAX_EMAIL - len("@example.com")) + "@example.com"
    assert len(sent) == MAX_EMAIL
    assert len(sent.lower()) > MAX_EMAIL  # "İ" lowercases to two code points
    assert normalize_email(sent) == sent.lower()


def test_whitespace_is_exactly_what_python_strips() -> None:
    """The document spells the set out; it must be the one ``str.strip`` and ``str.isspace`` use here."""
    assert "".join(c for c in map(chr, range(0x110000)) if c.isspace()) == WHITESPACE

"""Users: registration and look-up, over the ``users`` table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shop.connection import Connection
from shop.db import INTEGRITY_ERRORS, valid_id
from shop.errors import EmailTaken, InvalidInput, UserNotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
"""

MAX_EMAIL = 254
MAX_NAME = 200
# What the shop calls white space: exactly the characters of ``str.isspace`` (those ``str.strip`` removes). The public
# document's patterns spell them out one by one (plumbing.contract), because ``\s`` means another set in the regular
# expressions of JSON Schema (ECMA-262: no U+001C..U+001F, but U+FEFF) than in Python's.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

# A text may not hold NUL (U+0000): PostgreSQL's text type cannot store it, SQLite's can, and the shop answers the
# same on both engines (422). JSON carries it as "\u0000".
NUL = "\x00"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    name: str


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively; they must look like ``local@domain``.

    The length is that of the text as sent (less surrounding white space), as the document states it: lowercasing can
    lengthen a text ("İ" becomes two code points), and must not turn an address the document allows into a refusal.
    """
    email = email.strip()
    local, at, domain = email.partition("@")
    if (
        not (at and local and domain)
        or "@" in domain
        or len(email) > MAX_EMAIL
        or any(c.isspace() or c == NUL for c in email)
    ):
        raise InvalidInput(f"not an email address: {email[:80]!r}")
    return email.lower()


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or NUL in name:
        raise InvalidInput(f"name must have 1 to {MAX_NAME} characters, none of them NUL (U+0000)")
    return name


class Users:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def register(self, email: str, name: str) -> User:
        email, name = normalize_email(email), check_name(name)
        try:
            (user_id,) = self.conn.execute(
                "INSERT INTO users (email, name) VALUES (?, ?) RETURNING id", (email, name)
            ).fetchone()
        except INTEGRITY_ERRORS as exc:
            raise EmailTaken(f"email {email!r} is already registered") from exc
        return User(int(user_id), email, name)

    def get(self, user_id: int) -> User:
        row = None
        if valid_id(user_id):
            row = self.conn.execute("SELECT id, email, name FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise UserNotFound(f"user {user_id} does not exist")
        return User(*row)

    def seed(self, users: Iterable[tuple[str, str]]) -> None:
        """Insert seeded ``(email, name)`` pairs; they get ids 1..n on an empty table."""
        self.conn.executemany("INSERT INTO users (email, name) VALUES (?, ?)", users)

    def count(self) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM users").fetchone()
        return int(n)

"""Notifications delivered to users; delivery is de-duplicated by a key (one per order)."""

from __future__ import annotations

from dataclasses import dataclass

from shop.connection import Connection

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    order_id INTEGER,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, id);
"""


@dataclass(frozen=True, slots=True)
class Notification:
    key: str
    user_id: int
    order_id: int | None
    message: str


class Notifications:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def deliver(self, note: Notification) -> bool:
        """Store ``note`` unless one with the same key was delivered; returns whether it is new."""
        cur = self.conn.execute(
            "INSERT INTO notifications (key, user_id, order_id, message) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (note.key, note.user_id, note.order_id, note.message),
        )
        return cur.rowcount == 1

    def for_user(self, user_id: int, limit: int = 100) -> list[Notification]:
        rows = self.conn.execute(
            "SELECT key, user_id, order_id, message FROM notifications WHERE user_id = ? ORDER BY id DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [Notification(*row) for row in rows]

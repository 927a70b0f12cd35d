"""Notifications: delivery de-duplicated by key, listed per user, newest first."""

from __future__ import annotations

import sqlite3

from shop.db import UnitOfWork
from shop.notifications import Notification, Notifications

ANN, BOB = 1, 2


def deliver(conn: sqlite3.Connection, note: Notification) -> bool:
    with UnitOfWork(conn) as uow:
        new = Notifications(conn).deliver(note)
        uow.commit()
    return new


def note(order_id: int, user_id: int = ANN, message: str = "") -> Notification:
    return Notification(f"order-{order_id}", user_id, order_id, message or f"Order {order_id} confirmed")


def test_deliver_stores_the_notification(notifications_conn: sqlite3.Connection) -> None:
    assert deliver(notifications_conn, note(7)) is True

    assert Notifications(notifications_conn).for_user(ANN) == [note(7)]


def test_deliver_is_deduplicated_by_key(notifications_conn: sqlite3.Connection) -> None:
    # A delivery worker that retries after a lost acknowledgement must not notify twice.
    deliver(notifications_conn, note(7))

    assert deliver(notifications_conn, note(7)) is False
    assert deliver(notifications_conn, note(7, message="another text under the same key")) is False

    assert Notifications(notifications_conn).for_user(ANN) == [note(7)]


def test_notification_without_order(notifications_conn: sqlite3.Connection) -> None:
    welcome = Notification("welcome-1", ANN, None, "Welcome")

    assert deliver(notifications_conn, welcome) is True
    assert Notifications(notifications_conn).for_user(ANN) == [welcome]


def test_for_user_lists_newest_first_and_only_theirs(notifications_conn: sqlite3.Connection) -> None:
    for order_id, user_id in [(1, ANN), (2, BOB), (3, ANN), (4, ANN)]:
        deliver(notifications_conn, note(order_id, user_id))

    assert Notifications(notifications_conn).for_user(ANN) == [note(4), note(3), note(1)]
    assert Notifications(notifications_conn).for_user(BOB) == [note(2, BOB)]
    assert Notifications(notifications_conn).for_user(99) == []


def test_for_user_limit_keeps_the_newest(notifications_conn: sqlite3.Connection) -> None:
    for order_id in range(1, 6):
        deliver(notifications_conn, note(order_id))

    assert Notifications(notifications_conn).for_user(ANN, limit=2) == [note(5), note(4)]

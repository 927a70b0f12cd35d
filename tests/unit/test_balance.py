"""The balancer over replicas: turns, set-aside replicas, and what it repeats (and what it must not)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from plumbing.balance import BalancedTransport
from plumbing.transports import ErrorKind, RemoteCallError, Reply


class Replica:
    """A transport that answers with its name, or fails with ``fail`` while that is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fail: ErrorKind | None = None
        self.calls = 0
        self.closed = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Reply:
        self.calls += 1
        if self.fail is not None:
            raise RemoteCallError(self.fail, self.name)
        return Reply(200, self.name.encode(), {})

    async def aclose(self) -> None:
        self.closed = True


def names(replies: list[Reply]) -> list[str]:
    return [r.body.decode() for r in replies]


async def test_calls_go_to_the_replicas_in_turn() -> None:
    a, b, c = Replica("a"), Replica("b"), Replica("c")
    balancer = BalancedTransport([a, b, c])
    replies = [await balancer.request("GET", "/x") for _ in range(6)]
    assert names(replies) == ["a", "b", "c", "a", "b", "c"]


async def test_a_refusing_replica_is_set_aside_and_the_call_goes_on_to_the_next() -> None:
    a, b = Replica("a"), Replica("b")
    a.fail = "refused"
    balancer = BalancedTransport([a, b], eject=60.0)
    replies = [await balancer.request("POST", "/x") for _ in range(4)]  # refused: nothing was sent, so even a POST
    assert names(replies) == ["b"] * 4
    assert a.calls == 1  # set aside after its refusal, not tried again while aside


async def test_a_set_aside_replica_is_readmitted_when_its_time_is_up() -> None:
    a, b = Replica("a"), Replica("b")
    a.fail = "refused"
    balancer = BalancedTransport([a, b], eject=0.0)
    await balancer.request("GET", "/x")
    a.fail = None
    replies = [await balancer.request("GET", "/x") for _ in range(4)]
    assert sorted(names(replies)) == ["a", "a", "b", "b"]


async def test_a_broken_connection_is_retried_elsewhere_only_when_the_call_is_idempotent() -> None:
    a, b = Replica("a"), Replica("b")
    a.fail = "reset"
    balancer = BalancedTransport([a, b], eject=60.0)
    assert names([await balancer.request("GET", "/x")]) == ["b"]

    a2, b2 = Replica("a"), Replica("b")
    a2.fail = "reset"
    strict = BalancedTransport([a2, b2], eject=60.0)
    with pytest.raises(RemoteCallError) as raised:
        await strict.request("POST", "/charges", body=b"{}")  # it may have run: never repeated
    assert raised.value.kind == "reset"
    assert b2.calls == 0
    assert names([await strict.request("POST", "/charges", idempotent=True)]) == ["b"]


async def test_timeouts_are_not_retried_on_another_replica() -> None:
    a, b = Replica("a"), Replica("b")
    a.fail = "timeout"
    balancer = BalancedTransport([a, b])
    with pytest.raises(RemoteCallError):
        await balancer.request("GET", "/x")
    assert b.calls == 0


async def test_when_every_replica_is_aside_the_call_still_tries_them_all() -> None:
    a, b = Replica("a"), Replica("b")
    a.fail = b.fail = "refused"
    balancer = BalancedTransport([a, b], eject=60.0)
    with pytest.raises(RemoteCallError):
        await balancer.request("GET", "/x")
    b.fail = None
    assert names([await balancer.request("GET", "/x")]) == ["b"]  # both aside: tried anyway
    assert a.calls == 2


async def test_close_closes_every_replica_and_no_replica_is_refused() -> None:
    a, b = Replica("a"), Replica("b")
    await BalancedTransport([a, b]).aclose()
    assert a.closed
    assert b.closed
    with pytest.raises(ValueError, match="at least one"):
        BalancedTransport([])

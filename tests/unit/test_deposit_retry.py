"""The payments client: a keyed deposit carries its key and is a safe call to retry; an unkeyed one is sent once."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from microservices.api import PaymentsClient
from plumbing.resilience import Policy, ResilientTransport
from plumbing.transports import Reply
from shop.errors import Unavailable

BUSY = Reply(500, b'{"error": "internal_error", "detail": "failed"}', {})
CREDITED = Reply(201, b'{"user_id": 7, "balance_cents": 500}', {})


class Flaky:
    """A transport whose first replies are 500s, then 201; it records what each attempt carried."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, str, dict[str, str]]] = []

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
        self.sent.append((method, path, dict(headers or {})))
        if len(self.sent) <= self.failures:
            return BUSY
        return CREDITED

    async def aclose(self) -> None:
        pass


def resilient(inner: Flaky) -> PaymentsClient:
    policy = Policy(retries=2, backoff_base=0.0, backoff_max=0.0)
    return PaymentsClient(ResilientTransport(inner, "payments", policy, rng=random.Random(1)))


async def test_a_keyed_deposit_is_retried_with_its_key() -> None:
    flaky = Flaky(failures=2)

    assert await resilient(flaky).deposit(7, 500, "dep-1") == 500

    assert len(flaky.sent) == 3  # two retries: the payments service credits once per key
    for method, path, headers in flaky.sent:
        assert (method, path) == ("POST", "/wallets/7/deposits")
        assert headers["idempotency-key"] == "dep-1"


async def test_a_deposit_without_a_key_is_sent_once() -> None:
    flaky = Flaky(failures=1)

    with pytest.raises(Unavailable):
        await resilient(flaky).deposit(7, 500)

    assert len(flaky.sent) == 1  # it may have run: repeating it could credit twice
    _, _, headers = flaky.sent[0]
    assert "idempotency-key" not in headers

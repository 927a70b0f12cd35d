"""A load-balancing client over the replicas of one service: round robin, with replicas that refuse set aside.

Written here rather than taken from a library because it is a thin layer over :mod:`plumbing.transports`'s transports,
which must stay the same for the figures to compare (the client stack is measured, the balancer adds a counter and
a list lookup). It behaves like the client-side balancers of service meshes and gRPC (round robin with passive
outlier detection), reduced to what a replica restart needs:

* calls go to the replicas in turn;
* a replica whose connect is refused (it is stopping or not started: nothing was sent) is set aside for ``eject``
  seconds and the call goes to the next replica at once;
* a call whose connection broke before any reply is retried on the next replica only if it is idempotent (a GET or
  HEAD, or a caller that said so): a graceful stop closes idle keep-alive connections, and a request written on one
  at that instant never reached the application; a non-idempotent call is not repeated (it may have run);
* when every replica is set aside, the call still tries them, soonest back first: the balancer never fails a call
  without trying.

A set-aside replica is readmitted when its time is up: the first call then tells whether it is back.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from plumbing.transports import RemoteCallError, Reply, Transport

__all__ = ["BalancedTransport"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BalancedTransport:
    """One :class:`~plumbing.transports.Transport` over several replicas' transports (see the module docstring)."""

    def __init__(self, replicas: Sequence[Transport], *, eject: float = 1.0) -> None:
        if not replicas:
            raise ValueError("a balanced transport needs at least one replica")
        self.replicas = list(replicas)
        self.eject = eject
        self._next = 0
        self._back_at = [0.0] * len(self.replicas)

    def order(self) -> list[int]:
        """The replicas to try for the next call: the next in turn first, set-aside ones last (soonest back first)."""
        n = len(self.replicas)
        start, self._next = self._next, (self._next + 1) % n
        turn = [(start + i) % n for i in range(n)]
        now = time.monotonic()
        ready = [i for i in turn if self._back_at[i] <= now]
        aside = sorted((i for i in turn if self._back_at[i] > now), key=self._back_at.__getitem__)
        return ready + aside

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
        repeatable = idempotent if idempotent is not None else method in _SAFE_METHODS
        order = self.order()
        for attempt, index in enumerate(order):
            try:
                reply = await self.replicas[index].request(
                    method, path, body=body, headers=headers, timeout=timeout, idempotent=idempotent
                )
            except RemoteCallError as exc:
                last = attempt == len(order) - 1
                if exc.kind == "refused" or (exc.kind == "reset" and repeatable):
                    self._back_at[index] = time.monotonic() + self.eject
                    if not last:
                        continue
                raise
            self._back_at[index] = 0.0
            return reply
        raise AssertionError("unreachable: the loop returns or raises")

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()

"""Resilience profiles of the calls between components: ``naive`` (plain calls) or ``resilient``.

``naive`` is the transport as it is: one attempt, the run's default timeout, no breaker, no bound but the pool's.
``resilient`` wraps each dependency's transport in a :class:`ResilientTransport` that applies, per dependency:

* a timeout per attempt (:attr:`Policy.timeout`): a hung peer costs a bounded wait, not the caller's whole budget;
* retries with full-jitter exponential backoff, for idempotent calls only: a call that failed may still have run
  (the saga relies on the same fact), so only calls that are safe to repeat are repeated; the jitter keeps retries of
  many callers apart; a circuit breaker (:class:`CircuitBreaker`): after :attr:`Policy.breaker_failures` consecutive
  failures, calls fail
  at once with :class:`Rejected` for :attr:`Policy.breaker_reset` seconds, then one trial call decides;
* bounded concurrency (a bulkhead): at most :attr:`Policy.max_concurrency` calls in flight to the dependency; calls
  beyond it queue within their timeout and are then rejected, so a slow peer cannot tie up every task of the caller.

A failure, for retries and for the breaker, is a :class:`~plumbing.transports.RemoteCallError` or a reply with status
>= 500. A 4xx reply is a success: the dependency answered, it refused. The last 5xx reply is returned as is, so the
caller's error translation (``error_from_body``) still turns it into the domain error it carries.

:class:`Guard` holds the patterns themselves, around any awaitable, so the monolith can put the same ones around the
entry of a module (where its injected faults bite) without a second copy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from plumbing.transports import RemoteCallError, Reply, Transport

__all__ = [
    "DEFAULT_PROFILE",
    "IDEMPOTENT_METHODS",
    "PROFILES",
    "BreakerState",
    "CircuitBreaker",
    "Counters",
    "Guard",
    "Policy",
    "Rejected",
    "ResilientTransport",
    "check_profile",
    "wrap_transport",
]

PROFILES: Final[tuple[str, ...]] = ("naive", "resilient")
"""Valid values of a run's ``profile``."""

DEFAULT_PROFILE: Final[str] = "naive"

IDEMPOTENT_METHODS: Final[frozenset[str]] = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods retried unless the caller says otherwise (RFC 9110 9.2.2); a POST is retried only when the caller passes
``idempotent=True`` because the operation is keyed (a saga step keyed by order id)."""

BreakerState = Literal["closed", "open", "half-open"]

T = TypeVar("T")

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    """What the resilient profile does for one dependency.

    The defaults keep the worst case of one call (:attr:`worst_case`: 3 attempts of 0.5 s and 2 backoffs of at most
    0.2 s, 1.9 s) under the naive profile's default call timeout (2 s), while a healthy hop (a few ms, tens under
    load) stays far from the timeout.
    """

    timeout: float = 0.5
    """Seconds per attempt, queueing for a concurrency slot included."""
    retries: int = 2
    """Extra attempts after a failure, for idempotent calls only."""
    backoff_base: float = 0.02
    """Before retry n (from 1), sleep a uniform random time in [0, min(backoff_max, backoff_base * 2**(n-1))]."""
    backoff_max: float = 0.2
    breaker_failures: int = 5
    """Consecutive failed attempts that open the breaker."""
    breaker_reset: float = 1.0
    """Seconds the breaker stays open before it lets one trial call through (half-open)."""
    max_concurrency: int = 64
    """Calls in flight to the dependency at most; equal to the transports' default pool size, so calls queue here,
    within their timeout, rather than in the pool."""

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.breaker_reset <= 0:
            raise ValueError("timeout and breaker_reset must be > 0")
        if self.retries < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("retries, backoff_base and backoff_max must be >= 0")
        if self.breaker_failures < 1 or self.max_concurrency < 1:
            raise ValueError("breaker_failures and max_concurrency must be >= 1")

    @property
    def worst_case(self) -> float:
        """The longest an idempotent call can take before it returns or raises: every attempt and every backoff."""
        return (self.retries + 1) * self.timeout + self.retries * self.backoff_max

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to sleep before retry number ``retry`` (from 1): full jitter, uniform in [0, cap) with
        cap = min(backoff_max, backoff_base * 2**(retry-1)), so that the retries of many callers spread out."""
        cap = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry - 1, 62))
        return rng.random() * cap


class Rejected(RemoteCallError):
    """The call was refused on the caller's side and never sent: the breaker is open, or too many calls are in
    flight. Unlike its base class, the outcome is known (nothing ran); callers may still treat it as any
    :class:`~plumbing.transports.RemoteCallError` (503 at the boundary)."""


@dataclass(slots=True)
class Counters:
    """What a guard did, for metrics. Monotonic counts since the guard was made."""

    calls: int = 0
    """Calls made by callers (a call with retries counts once)."""
    retries: int = 0
    """Extra attempts made."""
    short_circuits: int = 0
    """Calls refused by an open breaker."""
    timeouts: int = 0
    """Attempts that got no reply in time."""
    rejected: int = 0
    """Calls refused because :attr:`Policy.max_concurrency` calls were in flight for the whole timeout."""


# Hand-written rather than a library, by fit: pybreaker has no asyncio support; purgatory (asyncio, about 1.5 us a
# call) lets every call through while half-open instead of one trial, counts a cancelled call as a failure of the
# dependency, and times the open state with the wall clock; aiobreaker (last release 2021) also lets every call
# through while half-open, replaces the error of the call that trips it with its own, and uses datetime.utcnow()
# (deprecated since Python 3.12: a warning, so an error under pytest -W error). Neither counts a 5xx *reply* as a
# failure without raising an exception for it. The state machine below costs well under 1 us a call.
class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; after ``reset`` seconds open, admits ONE trial call
    (half-open) whose outcome closes or reopens it.

    Each admitted call gets a ticket, the breaker's epoch at admission; an outcome reported with a ticket of an
    older epoch is ignored, so a slow call admitted before the breaker opened cannot close it, nor reopen it.
    Single event loop, no locks: every method runs without awaiting.
    """

    def __init__(
        self, failures: int, reset: float, *, name: str = "", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._threshold = failures
        self._reset = reset
        self._clock = clock
        self._state: BreakerState = "closed"
        self._epoch = 0
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # a half-open trial call is in flight

    @property
    def state(self) -> BreakerState:
        """``"half-open"`` as soon as the reset time has passed: the next call is the trial."""
        if self._state == "open" and self._clock() - self._opened_at >= self._reset:
            return "half-open"
        return self._state

    def admit(self) -> int | None:
        """A ticket for one call, or None if the call must fail fast."""
        if self._state == "closed":
            return self._epoch
        if self._state == "open":
            if self._clock() - self._opened_at < self._reset:
                return None
            self._enter("half-open")
        if self._trial:
            return None
        self._trial = True
        return self._epoch

    def success(self, ticket: int) -> None:
        if ticket != self._epoch:
            return
        if self._state == "half-open":
            self._enter("closed")
        else:
            self._failures = 0

    def failure(self, ticket: int) -> None:
        if ticket != self._epoch:
            return
        self._failures += 1
        if self._state == "half-open" or self._failures >= self._threshold:
            self._enter("open")

    def abandon(self, ticket: int) -> None:
        """The call ended with no verdict on the dependency (cancelled, refused locally): free the trial slot."""
        if ticket == self._epoch and self._state == "half-open":
            self._trial = False

    def _enter(self, state: BreakerState) -> None:
        if state != "half-open":
            _log.warning("circuit breaker %s: %s -> %s", self.name, self._state, state)
        self._state = state
        self._epoch += 1
        self._failures = 0
        self._trial = False
        if state == "open":
            self._opened_at = self._clock()


# Retries are a loop in Guard.run rather than tenacity or stamina, by measurement (success path, fake transport,
# uvloop, 2-core dev machine): tenacity's AsyncRetrying adds 36-47 us a call and its @retry 27-32 us, stamina's
# retry_context 20-25 us, against about 5 us for this whole guard (retries, breaker, bulkhead and timeout) -- and a
# raw-stack hop costs about 180 us. The loop also needs what both libraries would have to be bent to: a retry
# decision that depends on the call (idempotent or not) and on the breaker, and a result (5xx Reply) as a failure.
class Guard:
    """The resilient profile's patterns for one dependency, around any call: breaker, bounded concurrency, a timeout
    per attempt, retries with full-jitter backoff.

    Failures are :class:`~plumbing.transports.RemoteCallError` (the guard's own timeouts included), the exception types
    in ``failures``, and results for which ``failed`` is true. The guard's own refusals raise :class:`Rejected`.
    ``clock`` (breaker timing) and ``rng`` (jitter) are injectable for tests.
    """

    def __init__(
        self,
        name: str,
        policy: Policy,
        *,
        failures: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.counters = Counters()
        self.breaker = CircuitBreaker(policy.breaker_failures, policy.breaker_reset, name=name, clock=clock)
        self._failures: tuple[type[BaseException], ...] = (RemoteCallError, *failures)
        self._slots = asyncio.Semaphore(policy.max_concurrency)
        self._rng = rng or random.Random()

    @property
    def state(self) -> BreakerState:
        return self.breaker.state

    async def run(
        self,
        attempt: Callable[[float], Awaitable[T]],
        *,
        idempotent: bool,
        failed: Callable[[T], bool] | None = None,
        timeout: float | None = None,
    ) -> T:
        """Call ``attempt(seconds_left)`` until it succeeds or may no longer be retried; return its last result or
        raise its last error. ``timeout`` overrides :attr:`Policy.timeout` for each attempt of this call."""
        self.counters.calls += 1
        budget = self.policy.timeout if timeout is None else timeout
        retries_left = self.policy.retries if idempotent else 0
        ticket = self.breaker.admit()
        if ticket is None:
            self.counters.short_circuits += 1
            raise Rejected("unavailable", self.name, "circuit open")
        retry = 0
        while True:
            error: BaseException | None = None
            try:
                result = await self._attempt(attempt, budget)
            except Rejected:
                self.breaker.abandon(ticket)
                raise
            except self._failures as exc:
                if isinstance(exc, RemoteCallError) and exc.kind == "timeout":
                    self.counters.timeouts += 1
                error = exc
            except BaseException:
                self.breaker.abandon(ticket)
                raise
            else:
                if failed is None or not failed(result):
                    self.breaker.success(ticket)
                    return result
            # A failed attempt: retry while allowed and while the breaker is not open. The breaker judges calls, not
            # attempts: counting each failed attempt would trip it under a partial error rate that the retries absorb
            # (measured: with 50% injected errors it turned them into ~80% failures).
            if retry < retries_left and self.breaker.state != "open":
                retry += 1
                self.counters.retries += 1
                await asyncio.sleep(self.policy.backoff(retry, self._rng))
                continue
            self.breaker.failure(ticket)
            if error is not None:
                raise error
            return result

    async def _attempt(self, attempt: Callable[[float], Awaitable[T]], budget: float) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        slots = self._slots
        if slots.locked():  # only pay for a timer when the bulkhead is full
            try:
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            except TimeoutError:
                self.counters.rejected += 1
                limit = self.policy.max_concurrency
                raise Rejected("unavailable", self.name, f"{limit} calls in flight for {budget} s") from None
        else:
            await slots.acquire()
        try:
            return await _before(deadline, attempt(deadline - loop.time()))
        except TimeoutError as exc:
            raise RemoteCallError("timeout", self.name, f"no reply within {budget} s") from exc
        finally:
            slots.release()


class _Expiry:
    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()


async def _before(deadline: float, awaitable: Awaitable[T]) -> T:
    """``await awaitable`` until ``deadline`` (loop time), then cancel it and raise TimeoutError.

    What ``asyncio.timeout_at`` does, at half its cost on the success path (about 2 us instead of 4, measured with
    uvloop): the guard pays it on every call. The transports below also enforce the timeout they are given; this
    timer is what bounds the wait when one does not (a hung in-process call, a misbehaving transport). As in asyncio,
    a cancellation from outside is never turned into a timeout: only ours, counted with ``uncancel``.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("a guarded call must run in a task")
    cancelling = task.cancelling()
    expiry = _Expiry(task)
    timer = asyncio.get_running_loop().call_at(deadline, expiry)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if expiry.expired and task.uncancel() <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


def _server_error(reply: Reply) -> bool:
    """Whether a reply says the dependency itself failed. A 503 that names an unavailable dependency of ITS own is not
    counted: the dependency answered correctly, and counting it opened the breaker on healthy operations too (seen:
    a hung payments service cut order views to 60% through the gateway's breaker for orders)."""
    return reply.status >= 500 and not (reply.status == 503 and b'"dependency_unavailable"' in reply.body)


class ResilientTransport:
    """A :class:`~plumbing.transports.Transport` to ONE dependency, with the patterns of :class:`Guard` around it."""

    def __init__(
        self,
        inner: Transport,
        name: str,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.name = name
        self.policy = policy
        self.guard = Guard(name, policy, clock=clock, rng=rng)

    @property
    def state(self) -> BreakerState:
        """The dependency's breaker: ``"closed"``, ``"open"`` or ``"half-open"``."""
        return self.guard.state

    @property
    def counters(self) -> Counters:
        return self.guard.counters

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
        """Send one request through the guard. ``idempotent`` defaults to the method's own idempotence
        (:data:`IDEMPOTENT_METHODS`); pass True for a POST keyed so that repeating it is safe."""
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        inner = self.inner

        def attempt(seconds: float) -> Awaitable[Reply]:
            return inner.request(method, path, body=body, headers=headers, timeout=seconds)

        return await self.guard.run(attempt, idempotent=idempotent, failed=_server_error, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


def check_profile(profile: str) -> str:
    """``profile`` if valid, else ValueError naming the valid ones (for configuration and command-line checks)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown resilience profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return profile


def wrap_transport(inner: Transport, name: str, profile: str, policy: Policy | None = None) -> Transport:
    """The transport to dependency ``name`` under ``profile``: ``inner`` itself for ``naive``, a
    :class:`ResilientTransport` (with ``policy``, default :class:`Policy`) for ``resilient``."""
    if check_profile(profile) == "naive":
        return inner
    return ResilientTransport(inner, name, policy or Policy())

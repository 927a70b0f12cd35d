"""plumbing.resilience: the resilient profile's patterns against a scripted fake transport (no sockets).

Every test is bounded: hangs are cut by the guard's own timeout (tens of ms), and the breaker's reset time is driven
by a fake clock instead of sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from plumbing.resilience import (
    PROFILES,
    CircuitBreaker,
    Guard,
    Policy,
    Rejected,
    ResilientTransport,
    check_profile,
    wrap_transport,
)
from plumbing.transports import RemoteCallError, Reply, open_transport

OK = Reply(200, b"{}", {})
NOT_FOUND = Reply(404, b'{"error": "not_found", "detail": "no"}', {})


def server_error() -> Reply:
    """A new 5xx reply each time, so a test can check which one came back: the dependency itself failed."""
    return Reply(500, b'{"error": "injected_fault", "detail": "down"}', {})


class Hang:
    """A scripted outcome: never answer, whatever timeout the caller passed (a misbehaving peer and transport)."""


@dataclass
class Gate:
    """A scripted outcome: answer ``reply`` once ``opened`` is set."""

    reply: Reply = OK
    opened: asyncio.Event = field(default_factory=asyncio.Event)


Outcome = Reply | BaseException | Hang | Gate


@dataclass
class Sent:
    method: str
    path: str
    timeout: float | None


class FakeTransport:
    """A Transport that plays a script of outcomes, one per request, then answers ``then`` forever."""

    def __init__(self, *script: Outcome, then: Outcome = OK) -> None:
        self.script = list(script)
        self.then = then
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        self.sent.append(Sent(method, path, timeout))
        outcome = self.script.pop(0) if self.script else self.then
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if isinstance(outcome, Hang):
                await asyncio.Event().wait()
            if isinstance(outcome, Gate):
                await outcome.opened.wait()
                return outcome.reply
            if isinstance(outcome, BaseException):
                raise outcome
            assert isinstance(outcome, Reply)
            return outcome
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (bounded: a broken test fails instead of spinning)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def state(guarded: ResilientTransport | Guard | CircuitBreaker) -> str:
    """The breaker state, read afresh (a plain ``x.state == ...`` would be narrowed by mypy across calls)."""
    return guarded.state


def refused() -> RemoteCallError:
    return RemoteCallError("refused", "http://peer", "nothing listens")


# No waiting between retries unless a test asks for it.
FAST = Policy(timeout=0.05, retries=2, backoff_base=0.0, backoff_max=0.0, breaker_failures=100, breaker_reset=1.0)


def resilient(fake: FakeTransport, policy: Policy = FAST, clock: FakeClock | None = None) -> ResilientTransport:
    return ResilientTransport(fake, "peer", policy, clock=clock or FakeClock(), rng=random.Random(7))


# -- profiles ---------------------------------------------------------------------------------------------------------


def test_naive_profile_returns_the_inner_transport_unchanged() -> None:
    fake = FakeTransport()
    assert wrap_transport(fake, "peer", "naive") is fake


def test_resilient_profile_wraps_with_the_given_or_default_policy() -> None:
    fake = FakeTransport()
    wrapped = wrap_transport(fake, "peer", "resilient")
    assert isinstance(wrapped, ResilientTransport)
    assert wrapped.inner is fake
    assert wrapped.name == "peer"
    assert wrapped.policy == Policy()
    custom = wrap_transport(fake, "peer", "resilient", FAST)
    assert isinstance(custom, ResilientTransport)
    assert custom.policy is FAST


def test_unknown_profile_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="naive, resilient"):
        wrap_transport(FakeTransport(), "peer", "paranoid")
    with pytest.raises(ValueError, match="unknown resilience profile"):
        check_profile("")
    assert [check_profile(p) for p in PROFILES] == list(PROFILES)


async def test_aclose_closes_the_inner_transport() -> None:
    fake = FakeTransport()
    await resilient(fake).aclose()
    assert fake.closed


# -- policy -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout": 0},
        {"breaker_reset": -1},
        {"retries": -1},
        {"backoff_base": -0.1},
        {"breaker_failures": 0},
        {"max_concurrency": 0},
    ],
)
def test_policy_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Policy(**bad)  # type: ignore[arg-type]


def test_default_policy_worst_case_stays_under_the_naive_call_timeout() -> None:
    assert Policy().worst_case == pytest.approx(3 * 0.5 + 2 * 0.2)
    assert Policy().worst_case < 2.0


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = Policy(backoff_base=0.01, backoff_max=0.05)
    rng = random.Random(3)
    for retry, cap in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (50, 0.05), (5000, 0.05)]:
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0 <= w < cap + 1e-12 for w in waits)
        assert min(waits) < cap * 0.1
        assert max(waits) > cap * 0.9


# -- retries ----------------------------------------------------------------------------------------------------------


async def test_idempotent_get_is_retried_after_a_5xx_reply() -> None:
    fake = FakeTransport(server_error(), OK)
    transport = resilient(fake)
    assert await transport.request("GET", "/x") is OK
    assert len(fake.sent) == 2
    assert transport.counters.retries == 1
    assert transport.counters.calls == 1


async def test_idempotent_get_is_retried_after_a_transport_failure() -> None:
    fake = FakeTransport(refused(), RemoteCallError("reset", "http://peer"), OK)
    assert await resilient(fake).request("GET", "/x") is OK
    assert len(fake.sent) == 3


@pytest.mark.parametrize("outcome", [server_error(), refused()], ids=["5xx", "transport"])
async def test_plain_post_is_never_retried(outcome: Outcome) -> None:
    fake = FakeTransport(outcome)
    transport = resilient(fake)
    if isinstance(outcome, Reply):
        assert await transport.request("POST", "/users", body=b"{}") is outcome
    else:
        with pytest.raises(RemoteCallError) as caught:
            await transport.request("POST", "/users", body=b"{}")
        assert caught.value is outcome
    assert len(fake.sent) == 1
    assert transport.counters.retries == 0


async def test_post_marked_idempotent_is_retried() -> None:
    fake = FakeTransport(refused(), server_error(), OK)
    assert await resilient(fake).request("POST", "/charges", body=b"{}", idempotent=True) is OK
    assert [s.method for s in fake.sent] == ["POST"] * 3


async def test_get_marked_not_idempotent_is_not_retried() -> None:
    fake = FakeTransport(server_error())
    reply = await resilient(fake).request("GET", "/x", idempotent=False)
    assert reply.status == 500
    assert len(fake.sent) == 1


async def test_after_the_last_attempt_the_last_5xx_reply_comes_back_as_is() -> None:
    last = server_error()
    fake = FakeTransport(server_error(), server_error(), last)
    assert await resilient(fake).request("GET", "/x") is last
    assert len(fake.sent) == 3  # 1 + FAST.retries


async def test_after_the_last_attempt_the_last_transport_error_is_raised() -> None:
    last = RemoteCallError("reset", "http://peer", "the last one")
    fake = FakeTransport(refused(), refused(), last)
    with pytest.raises(RemoteCallError) as caught:
        await resilient(fake).request("GET", "/x")
    assert caught.value is last


async def test_4xx_is_an_answer_not_retried() -> None:
    fake = FakeTransport(NOT_FOUND)
    assert await resilient(fake).request("GET", "/x") is NOT_FOUND
    assert len(fake.sent) == 1


async def test_other_exceptions_are_not_retried_nor_counted() -> None:
    fake = FakeTransport(ValueError("invalid header"))
    transport = resilient(fake, Policy(retries=3, breaker_failures=1, backoff_base=0, backoff_max=0))
    with pytest.raises(ValueError, match="invalid header"):
        await transport.request("GET", "/x")
    assert len(fake.sent) == 1
    assert state(transport) == "closed"


async def test_retries_wait_between_attempts() -> None:
    """The backoff is a real sleep: other tasks run between two attempts (the fake itself never yields)."""
    fake = FakeTransport(refused(), OK)
    policy = Policy(timeout=1.0, retries=1, backoff_base=0.005, backoff_max=0.005)
    task = asyncio.ensure_future(resilient(fake, policy).request("GET", "/x"))
    await asyncio.sleep(0)
    sent_meanwhile = len(fake.sent)
    assert await task is OK
    assert sent_meanwhile == 1  # the first attempt was made, the retry was still waiting


# -- timeouts ---------------------------------------------------------------------------------------------------------


async def test_a_hanging_call_is_cut_at_the_policy_timeout() -> None:
    fake = FakeTransport(Hang())
    transport = resilient(fake, Policy(timeout=0.02, retries=0))
    async with asyncio.timeout(5):  # the test's own bound, far above the policy's
        with pytest.raises(RemoteCallError) as caught:
            await transport.request("GET", "/x")
    assert caught.value.kind == "timeout"
    assert not isinstance(caught.value, Rejected)
    assert transport.counters.timeouts == 1
    assert fake.in_flight == 0  # the hung call was cancelled, not left behind


async def test_the_inner_transport_is_given_the_time_left() -> None:
    fake = FakeTransport()
    await resilient(fake, Policy(timeout=0.3)).request("GET", "/x")
    await resilient(fake, Policy(timeout=0.3)).request("GET", "/x", timeout=0.1)
    first, second = (s.timeout for s in fake.sent)
    assert first is not None
    assert 0 < first <= 0.3
    assert second is not None
    assert 0 < second <= 0.1


async def test_a_timed_out_idempotent_call_is_retried() -> None:
    fake = FakeTransport(Hang(), OK)
    transport = resilient(fake, Policy(timeout=0.02, retries=1, backoff_base=0, backoff_max=0))
    async with asyncio.timeout(5):
        assert await transport.request("GET", "/x") is OK
    assert transport.counters.timeouts == 1
    assert transport.counters.retries == 1


async def test_a_timeout_reported_by_the_inner_transport_is_counted() -> None:
    fake = FakeTransport(RemoteCallError("timeout", "http://peer"))
    transport = resilient(fake, Policy(retries=0))
    with pytest.raises(RemoteCallError, match="timeout"):
        await transport.request("GET", "/x")
    assert transport.counters.timeouts == 1


async def test_cancelling_the_caller_is_not_turned_into_a_timeout() -> None:
    fake = FakeTransport(Hang())
    transport = resilient(fake, Policy(timeout=10.0, breaker_failures=1))
    task = asyncio.ensure_future(transport.request("GET", "/x"))
    await until(lambda: bool(fake.sent))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.counters.timeouts == 0
    assert state(transport) == "closed"  # a cancelled call says nothing about the dependency


# -- circuit breaker --------------------------------------------------------------------------------------------------

BREAKER = Policy(timeout=0.05, retries=0, breaker_failures=3, breaker_reset=2.0)


async def fail_times(transport: ResilientTransport, n: int) -> None:
    for _ in range(n):
        with pytest.raises(RemoteCallError):
            await transport.request("GET", "/x")


async def test_breaker_opens_after_n_consecutive_failures_and_fails_fast() -> None:
    fake = FakeTransport(then=refused())
    transport = resilient(fake, BREAKER)
    await fail_times(transport, 2)
    assert state(transport) == "closed"
    await fail_times(transport, 1)
    assert state(transport) == "open"
    with pytest.raises(Rejected) as caught:
        await transport.request("GET", "/x")
    assert caught.value.kind == "unavailable"
    assert "circuit open" in str(caught.value)
    assert isinstance(caught.value, RemoteCallError)
    assert len(fake.sent) == 3  # the short-circuited call never reached the transport
    assert transport.counters.short_circuits == 1
    assert transport.counters.calls == 4


async def test_5xx_replies_count_for_the_breaker_but_4xx_replies_do_not() -> None:
    fake = FakeTransport(server_error(), server_error(), NOT_FOUND, server_error(), server_error())
    transport = resilient(fake, BREAKER)
    for _ in range(5):
        await transport.request("GET", "/x")
    assert state(transport) == "closed"  # the 404 broke the run of failures: 2, then 2
    assert await transport.request("GET", "/x") is OK


async def test_breaker_half_opens_after_the_reset_time_and_closes_on_success() -> None:
    clock = FakeClock()
    fake = FakeTransport(refused(), refused(), refused())
    transport = resilient(fake, BREAKER, clock)
    await fail_times(transport, 3)
    clock.now += 1.9
    assert state(transport) == "open"
    with pytest.raises(Rejected):
        await transport.request("GET", "/x")
    clock.now += 0.1
    assert state(transport) == "half-open"
    assert await transport.request("GET", "/x") is OK  # the trial call
    assert state(transport) == "closed"
    assert await transport.request("GET", "/x") is OK


async def test_half_open_lets_one_trial_through_and_a_failed_trial_reopens() -> None:
    clock = FakeClock()
    gate = Gate(reply=server_error())
    fake = FakeTransport(refused(), refused(), refused(), gate)
    transport = resilient(fake, BREAKER, clock)
    await fail_times(transport, 3)
    clock.now += 2.0
    trial = asyncio.ensure_future(transport.request("GET", "/x"))
    await asyncio.sleep(0)
    with pytest.raises(Rejected):  # a second call while the trial is in flight fails fast
        await transport.request("GET", "/x")
    gate.opened.set()
    assert (await trial).status == 500
    assert state(transport) == "open"
    assert len(fake.sent) == 4


async def test_a_cancelled_trial_frees_the_half_open_slot() -> None:
    clock = FakeClock()
    fake = FakeTransport(refused(), refused(), refused(), Hang())
    transport = resilient(fake, Policy(timeout=10.0, retries=0, breaker_failures=3, breaker_reset=2.0), clock)
    await fail_times(transport, 3)
    clock.now += 2.0
    trial = asyncio.ensure_future(transport.request("GET", "/x"))
    await until(lambda: len(fake.sent) >= 4)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert await transport.request("GET", "/x") is OK  # the next call may be the trial
    assert state(transport) == "closed"


async def test_the_breaker_counts_calls_not_attempts() -> None:
    fake = FakeTransport(then=server_error())
    policy = Policy(timeout=0.05, retries=5, backoff_base=0, backoff_max=0, breaker_failures=2)
    transport = resilient(fake, policy)
    reply = await transport.request("GET", "/x")
    assert reply.status == 500
    assert len(fake.sent) == 6  # every retry was sent: retries absorb a partial error rate without tripping
    assert state(transport) == "closed"
    assert (await transport.request("GET", "/x")).status == 500
    assert state(transport) == "open"  # two failed calls
    with pytest.raises(Rejected):
        await transport.request("GET", "/x")
    assert len(fake.sent) == 12


def test_an_outcome_from_before_the_breaker_opened_is_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 1.0, clock=clock)
    slow = breaker.admit()
    first, second = breaker.admit(), breaker.admit()
    assert slow is not None
    assert first is not None
    assert second is not None
    breaker.failure(first)
    breaker.failure(second)
    assert state(breaker) == "open"
    breaker.success(slow)  # a slow call admitted while closed answers late
    assert state(breaker) == "open"
    clock.now += 1.0
    trial = breaker.admit()
    assert trial is not None
    assert breaker.admit() is None
    breaker.failure(slow)  # nor can it reopen a half-open breaker
    assert state(breaker) == "half-open"
    breaker.success(trial)
    assert state(breaker) == "closed"


# -- bounded concurrency ----------------------------------------------------------------------------------------------


async def test_concurrency_is_bounded_and_queued_calls_proceed_when_a_slot_frees() -> None:
    gates = [Gate() for _ in range(3)]
    fake = FakeTransport(*gates)
    transport = resilient(fake, Policy(timeout=5.0, max_concurrency=2))
    calls = [asyncio.ensure_future(transport.request("GET", "/x")) for _ in range(3)]
    await until(lambda: len(fake.sent) >= 2)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(fake.sent) == 2
    assert fake.in_flight == 2
    gates[0].opened.set()
    await until(lambda: len(fake.sent) >= 3)
    gates[1].opened.set()
    gates[2].opened.set()
    assert await asyncio.gather(*calls) == [OK, OK, OK]
    assert fake.max_in_flight == 2


async def test_a_call_that_finds_no_slot_within_its_timeout_is_rejected_without_blaming_the_peer() -> None:
    gate = Gate()
    fake = FakeTransport(gate)
    transport = resilient(fake, Policy(timeout=0.02, max_concurrency=1, breaker_failures=1, retries=2))
    holder = asyncio.ensure_future(transport.request("GET", "/x", timeout=5.0))  # holds the only slot
    await until(lambda: bool(fake.sent))
    async with asyncio.timeout(5):
        with pytest.raises(Rejected) as caught:
            await transport.request("GET", "/y")
    assert "calls in flight" in str(caught.value)
    assert transport.counters.rejected == 1
    assert transport.counters.retries == 0
    assert state(transport) == "closed"  # our own saturation is not a failure of the dependency
    gate.opened.set()
    assert await holder is OK
    assert len(fake.sent) == 1


# -- the guard alone, as the monolith would use it around a module's entry ------------------------------------------


class ModuleDown(Exception):
    """Stands for plumbing.faults.InjectedFault."""


async def test_guard_counts_and_retries_extra_failure_types_and_bounds_a_hang() -> None:
    guard = Guard(
        "payments",
        Policy(timeout=0.02, retries=1, backoff_base=0, backoff_max=0, breaker_failures=2),
        failures=(ModuleDown,),
    )
    attempts: list[float] = []

    async def flaky(seconds: float) -> None:
        attempts.append(seconds)
        if len(attempts) == 1:
            raise ModuleDown("injected")

    await guard.run(flaky, idempotent=True)
    assert len(attempts) == 2

    async def hung(seconds: float) -> None:
        await asyncio.Event().wait()

    async with asyncio.timeout(5):
        with pytest.raises(RemoteCallError, match="timeout calling payments"):
            await guard.run(hung, idempotent=True)
        assert guard.counters.timeouts == 2
        assert state(guard) == "closed"  # one failed call so far
        with pytest.raises(RemoteCallError, match="timeout calling payments"):
            await guard.run(hung, idempotent=True)
    assert state(guard) == "open"
    with pytest.raises(Rejected):
        await guard.run(flaky, idempotent=True)


# -- over a real transport: the in-process ASGI stack (no sockets) ----------------------------------------------------


async def test_over_the_asgi_stack_5xx_is_retried_and_a_hang_is_cut() -> None:
    hits: list[str] = []

    async def flaky(request: Request) -> Response:
        hits.append("flaky")
        return PlainTextResponse("down" if len(hits) == 1 else "up", 503 if len(hits) == 1 else 200)

    async def hang(request: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = Starlette(routes=[Route("/flaky", flaky), Route("/hang", hang)])
    inner = open_transport("asgi", "http://peer", app=app, timeout=30.0)
    transport = ResilientTransport(inner, "peer", Policy(timeout=0.05, retries=1, backoff_base=0, backoff_max=0))
    try:
        reply = await transport.request("GET", "/flaky")
        assert (reply.status, reply.body) == (200, b"up")
        async with asyncio.timeout(5):
            with pytest.raises(RemoteCallError) as caught:
                await transport.request("GET", "/hang")
        assert caught.value.kind == "timeout"
        assert transport.counters.retries == 2
    finally:
        await transport.aclose()  # cancels the calls still hanging in the app


async def test_a_dependency_reporting_its_own_dependency_down_does_not_open_the_breaker() -> None:
    body = b'{"error":"dependency_unavailable","detail":"payments did not answer"}'
    fake = FakeTransport(then=Reply(503, body, {}))
    policy = Policy(timeout=0.05, retries=2, backoff_base=0, backoff_max=0, breaker_failures=2)
    transport = resilient(fake, policy)
    for _ in range(5):
        assert (await transport.request("POST", "/orders", idempotent=False)).status == 503
    assert state(transport) == "closed"
    assert len(fake.sent) == 5  # answered, so not retried either

"""The open-loop load generator and the statistics over its records.

Servers run in a subprocess so that they never share the generator's interpreter; each binds 127.0.0.1:0, prints
its port, and is killed with its process group at teardown. ``FixedWorkload`` runs in generator processes (the
harness's path); ``_Fixed``, which cannot describe itself, runs the engine in this interpreter.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from bench.common import stats
from bench.common.names import ERRORS
from bench.load.loadgen import (
    ERROR_CLASSES,
    LoadResult,
    LoadSpec,
    PreciseTimer,
    Request,
    encode_request,
    pool_size,
    run_load,
    schedule,
)
from bench.load.processes import run_load_sync
from bench.load.workload import FixedWorkload

#: The per-request columns of a generator's records, in order.
RECORD_COLUMNS = ["op", "intended", "dispatched", "sent", "done", "status", "error", "unanswered", "warmup"]


# ---- the test server (runs in a subprocess) ------------------------------------------------------------------------

# Run with ``python -c`` so that the server starts in a tenth of a second (importing this module takes a second).
# Its modes: ``ok`` 200; ``status:N`` status N; ``stall:K:MS`` blocks the whole server for MS ms when the K-th request
# (counting from 1, over all connections) arrives, once; ``delay:MS`` answers each request MS ms late (without
# blocking); ``hang`` never answers; ``close`` closes the connection instead of answering; ``reuse-closes`` answers
# the first request of each connection and closes it when a second arrives (as a stopping server closes kept-alive
# connections).
SERVER = """
import asyncio, sys, time
import httptools, uvloop

MODE, _, ARG = sys.argv[1].partition(":")
received = 0


class Server(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.served = 0

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        global received
        received += 1
        if MODE == "hang":
            return
        if MODE == "close" or (MODE == "reuse-closes" and self.served):
            self.transport.close()
            return
        self.served += 1
        status = int(ARG) if MODE == "status" else 200
        if MODE == "stall":
            at, ms = map(int, ARG.split(":"))
            if received == at:
                time.sleep(ms / 1000)  # blocks every connection: a GC pause, a stop-the-world
        response = b"HTTP/1.1 %d X\\r\\nContent-Length: 2\\r\\n\\r\\nok" % status
        if MODE == "delay":
            asyncio.get_running_loop().call_later(int(ARG) / 1000, self.transport.write, response)
        else:
            self.transport.write(response)


async def main():
    server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


uvloop.run(main())
"""


# ---- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Callable[[str], str]]:
    """Start a test server in a given mode (see ``SERVER``); returns its base URL. All are killed at teardown."""
    processes: list[subprocess.Popen[str]] = []

    def start(mode: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, mode],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        processes.append(process)
        assert process.stdout is not None
        port = process.stdout.readline().strip()  # the server prints its port once it listens: no sleep needed
        assert port.isdigit(), f"test server failed to start (exit {process.poll()})"
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def _fixed(path: str = "/") -> FixedWorkload:
    return FixedWorkload(Request("get", "GET", path))


class _Fixed:
    """A workload that sends the same GET again and again and counts the responses it is told about; it has no
    description, so it runs in this interpreter."""

    def __init__(self, path: str = "/") -> None:
        self.request = Request("get", "GET", path)
        self.responses: list[int] = []

    def next_request(self) -> Request:
        return self.request

    def on_response(self, request: Request, status: int, body: bytes) -> None:
        self.responses.append(status)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- coordinated omission -----------------------------------------------------------------------------------------

RATE, DURATION, WARMUP = 200.0, 2.0, 0.5
STALL_AT = int((WARMUP + 0.75) * RATE)  # the request intended 0.75 s into the measured window


@pytest.mark.sockets
@pytest.mark.parametrize("processes", [1, 2])
def test_a_stall_shows_in_the_open_loop_tail(server: Callable[[str], str], processes: int) -> None:
    url = server(f"stall:{STALL_AT}:200")
    spec = LoadSpec(rate=RATE, duration=DURATION, warmup=WARMUP, connections=64, processes=processes)
    result = run_load_sync(url, _fixed(), spec)

    latency = stats.latency_percentiles(stats.latencies(stats.measured(result.to_frame())))
    # About 40 requests were intended during the 200 ms stall; each waited for the rest of it.
    assert latency["max"] >= 0.15
    assert latency["p99"] >= 0.15
    assert result.summary()["errors"] == dict.fromkeys(ERRORS, 0)


@pytest.mark.sockets
def test_a_closed_loop_measurement_of_the_same_stall_hides_it(server: Callable[[str], str]) -> None:
    """With one connection the generator degenerates into a closed loop: what such a tool records is latency from
    the moment a request could be sent (``done - sent``). Only the one request caught in the stall looks slow, so its
    p99 is small, while latency from the intended time (what users waited) keeps the whole stall in the tail."""
    url = server(f"stall:{STALL_AT}:200")
    spec = LoadSpec(rate=RATE, duration=DURATION, warmup=WARMUP, connections=1)
    result = run_load_sync(url, _fixed(), spec)
    frame = stats.measured(result.to_frame())

    closed_loop = stats.latency_percentiles(frame["done"] - frame["sent"])
    open_loop = stats.latency_percentiles(stats.latencies(frame))
    assert closed_loop["max"] >= 0.15  # the request in the stall
    assert closed_loop["p99"] < 0.05  # ... and nothing else
    assert open_loop["p99"] >= 0.15
    # The queue behind the single connection is the server's doing: a measured overload, not the generator's lag.
    assert result.judgement.overloaded
    assert "waited for a free connection" in result.judgement.overload_reason


# ---- validity -----------------------------------------------------------------------------------------------------


@pytest.mark.sockets
def test_a_rate_the_server_cannot_keep_up_with_is_a_measured_overload(server: Callable[[str], str]) -> None:
    url = server("delay:10")  # one connection can carry 100 req/s, 200 are asked for
    spec = LoadSpec(rate=200, duration=0.5, warmup=0.1, connections=1)
    result = run_load_sync(url, _fixed(), spec)

    # Past the knee: the figures stand (the generator kept its schedule), the run says it was an overload.
    summary = result.summary()
    assert summary["overloaded"] is True
    assert "waited for a free connection" in summary["overload_reason"]
    assert not result.sent_in_full
    assert summary["p99"] > 0.1  # the queue is charged to the server, from the intended send times


class _Broken(_Fixed):
    def next_request(self) -> Request:
        if len(self.responses) >= 3:
            raise RuntimeError("out of ideas")
        return self.request


@pytest.mark.sockets
def test_a_workload_that_raises_aborts_the_run_as_invalid(server: Callable[[str], str]) -> None:
    spec = LoadSpec(rate=50, duration=1.0, warmup=0.0)
    result = run_load_sync(server("ok"), _Broken(), spec)
    assert not result.valid
    assert result.invalid_reasons == ["the workload raised: next_request: RuntimeError('out of ideas')"]


def _synthetic(sent_lag: float = 0.0, unsent: int = 0, rate: float = 100.0, dispatch_lag: float = 0.0) -> LoadResult:
    """A 2-second run at ``rate`` with no warm-up: every request dispatched ``dispatch_lag`` late (the generator's
    own lag), sent ``sent_lag`` after its intended time (waiting for a connection) and answered 1 ms later."""
    spec = LoadSpec(rate=rate, duration=2.0, warmup=0.0)
    intended = schedule(spec)
    sent = intended + max(sent_lag, dispatch_lag)
    sent[len(sent) - unsent :] = np.nan
    n = len(intended)
    records = {
        "op": np.array(["get"] * n, dtype=object),
        "intended": intended,
        "dispatched": intended + dispatch_lag,
        "sent": sent,
        "done": np.where(np.isnan(sent), intended + 5.0, sent + 0.001),
        "status": np.where(np.isnan(sent), 0, 200),
        "error": np.array(["" if s == s else "timeout" for s in sent], dtype=object),
        "warmup": np.zeros(n, dtype=bool),
    }
    return LoadResult(spec, records, connections=4)


def test_validity_rules_on_synthetic_records() -> None:
    good = _synthetic()
    assert good.valid
    assert good.invalid_reasons == []
    assert good.achieved_rate == pytest.approx(100.0)

    # The generator itself 20 ms late on every request: most of a 21 ms latency, and behind its schedule.
    late = _synthetic(dispatch_lag=0.020)
    assert not late.valid
    assert late.send_lag_p99 == pytest.approx(0.020)
    assert "dispatched 0.0% of the requests within 10 ms" in " ".join(late.invalid_reasons)
    assert "p50" in late.judgement.voided
    assert "the generator's own lag 20.00 ms" in late.judgement.voided["p50"]

    # Requests that waited 2 ms for a connection: the server's queue, a measured overload.
    queued = _synthetic(sent_lag=0.002)
    assert queued.valid
    assert queued.judgement.overloaded

    short = _synthetic(unsent=3)  # 197 of 200 sent: 98.5%
    assert short.valid
    assert not short.sent_in_full
    assert short.judgement.overloaded

    # 198 of 200 is exactly 99% achieved.
    assert _synthetic(unsent=2).sent_in_full


def test_a_run_without_measured_requests_is_invalid() -> None:
    spec = LoadSpec(rate=1.0, duration=0.5, warmup=1.0)
    records = {name: np.array([], dtype=float) for name in ("intended", "dispatched", "sent", "done")}
    records |= {
        "op": np.array([], dtype=object),
        "status": np.array([], dtype=int),
        "error": np.array([], dtype=object),
        "warmup": np.array([], dtype=bool),
    }
    result = LoadResult(spec, records, connections=1)
    assert not result.valid
    assert "no request was scheduled" in result.invalid_reasons[0]


# ---- error classes ------------------------------------------------------------------------------------------------


@pytest.mark.sockets
@pytest.mark.parametrize(
    ("mode", "expected_status", "expected_error"),
    [("status:500", 500, "5xx"), ("status:404", 404, "4xx"), ("hang", 0, "timeout"), ("close", 0, "reset")],
)
def test_error_classes(server: Callable[[str], str], mode: str, expected_status: int, expected_error: str) -> None:
    workload = _fixed()
    spec = LoadSpec(rate=20, duration=0.5, warmup=0.0, timeout=0.3)
    result = run_load_sync(server(mode), workload, spec)
    frame = result.to_frame()

    assert len(frame) == 10
    assert (frame["status"] == expected_status).all()
    assert (frame["error"] == expected_error).all()
    assert stats.error_counts(frame)[expected_error] == 10
    assert workload.statuses == {expected_status: 10}  # the workload hears about every request, failed or not
    if expected_error == "timeout":  # given up about `timeout` after the intended time, not later than a sweep
        latency = stats.latencies(frame)
        assert latency.min() >= 0.3
        assert latency.max() < 0.3 + 0.25


@pytest.mark.sockets
def test_a_refused_port_is_classified_refused() -> None:
    spec = LoadSpec(rate=20, duration=0.5, warmup=0.0)
    result = run_load_sync(f"http://127.0.0.1:{_unused_port()}", _fixed(), spec)
    frame = result.to_frame()
    assert (frame["error"] == "refused").all()
    assert (frame["status"] == 0).all()
    assert result.summary()["errors"]["refused"] == 10


# ---- records ------------------------------------------------------------------------------------------------------


@pytest.mark.sockets
def test_records_mark_the_warmup_and_keep_every_request(server: Callable[[str], str]) -> None:
    spec = LoadSpec(rate=100, duration=0.5, warmup=0.3)
    result = run_load_sync(server("ok"), _fixed(), spec)
    frame = result.to_frame()
    assert math.isfinite(result.t0)

    assert list(frame.columns) == [
        "op",
        "intended",
        "dispatched",
        "sent",
        "done",
        "status",
        "error",
        "unanswered",
        "warmup",
    ]
    assert len(frame) == 80
    assert frame["warmup"].sum() == 30
    assert (frame.loc[frame["warmup"], "intended"] < 0.3).all()
    assert (frame["status"] == 200).all()
    assert (frame["error"] == "").all()
    assert (frame["intended"] <= frame["dispatched"]).all()
    assert (frame["dispatched"] <= frame["sent"]).all()
    assert (frame["sent"] < frame["done"]).all()
    assert list(frame["error"].cat.categories) == list(ERROR_CLASSES)

    summary = result.summary()
    assert summary["requests"] == 50
    assert summary["offered_rate"] == pytest.approx(100.0)
    assert summary["error_rate"] == 0.0
    for key in ("p50", "p90", "p99", "p99.9", "p99.99", "max", "send_lag_p99", "achieved_rate", "valid"):
        assert key in summary


@pytest.mark.sockets
def test_a_workload_without_description_runs_here_with_one_process_only(server: Callable[[str], str]) -> None:
    url = server("ok")
    workload = _Fixed()
    result = run_load_sync(url, workload, LoadSpec(rate=50, duration=0.2, warmup=0.0))
    assert workload.responses == [200] * 10  # told here: it ran in this interpreter
    assert math.isfinite(result.t0)
    with pytest.raises(ValueError, match="describes itself"):
        run_load_sync(url, workload, LoadSpec(rate=50, duration=0.2, warmup=0.0, processes=2))


@pytest.mark.sockets
async def test_run_load_also_runs_on_the_default_event_loop(server: Callable[[str], str]) -> None:
    url = server("ok")
    result = await run_load(url, _Fixed(), LoadSpec(rate=50, duration=0.2, warmup=0.0))
    assert (result.to_frame()["status"] == 200).all()
    assert len(result.records["op"]) == 10


def test_schedules() -> None:
    constant = schedule(LoadSpec(rate=10, duration=1.0, warmup=0.5))
    assert constant.tolist() == pytest.approx([i / 10 for i in range(15)])

    spec = LoadSpec(rate=1000, duration=10.0, warmup=0.0, arrival="poisson", seed=7)
    poisson = schedule(spec)
    assert np.array_equal(poisson, schedule(spec))  # seeded
    assert not np.array_equal(poisson, schedule(LoadSpec(rate=1000, duration=10.0, arrival="poisson", seed=8)))
    assert poisson[0] == 0.0
    assert (np.diff(poisson) >= 0).all()
    assert poisson[-1] < 10.0
    assert len(poisson) == pytest.approx(10_000, rel=0.05)
    gaps = np.diff(poisson)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)  # exponential: coefficient of variation 1


def test_pool_size_follows_littles_law_within_bounds() -> None:
    assert pool_size(LoadSpec(rate=1000, duration=1, expected_latency=0.01)) == 40
    assert pool_size(LoadSpec(rate=10, duration=1)) == 4
    assert pool_size(LoadSpec(rate=1e6, duration=1)) == 256
    assert pool_size(LoadSpec(rate=10, duration=1, connections=3)) == 3


def test_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="arrival"):
        LoadSpec(rate=1, duration=1, arrival="bursty")
    with pytest.raises(ValueError, match="rate"):
        LoadSpec(rate=0, duration=1)
    with pytest.raises(ValueError, match="processes"):
        LoadSpec(rate=1, duration=1, processes=0)


def test_encode_request() -> None:
    get = encode_request(Request("x", "GET", "/a?b=1", headers=(("Authorization", "Bearer t"),)), "h:1")
    assert get == b"GET /a?b=1 HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer t\r\n\r\n"
    post = encode_request(Request("x", "POST", "/o", b'{"a":1}'), "h")
    assert post == b'POST /o HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n{"a":1}'


# ---- stats --------------------------------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = np.arange(1, 1001) / 1000  # 1 ms .. 1 s
    p = stats.latency_percentiles(values)
    assert p == {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999, "p99.99": 1.0, "max": 1.0}
    assert all(math.isnan(v) for v in stats.latency_percentiles([]).values())
    assert stats.percentile([3.0, math.nan, 1.0], 50) == 1.0


def test_per_op_summary_and_error_counts() -> None:
    frame = pd.DataFrame(
        {
            "op": ["a", "a", "b", "b", "b"],
            "intended": [0.0, 1.0, 2.0, 3.0, 4.0],
            "done": [0.1, 1.2, 2.3, 3.3, 4.3],
            "error": ["", "5xx", "", "", "timeout"],
            "warmup": [True, False, False, False, False],
        }
    )
    summary = stats.per_op_summary(frame)
    assert summary.loc["a", "count"] == 1  # the warm-up row is excluded
    assert summary.loc["a", "errors"] == 1
    assert summary.loc["b", "error_rate"] == pytest.approx(1 / 3)
    assert summary.loc["b", "max"] == pytest.approx(0.3)
    assert stats.error_counts(frame) == {"refused": 0, "reset": 0, "timeout": 1, "4xx": 0, "5xx": 1}


def test_sustainable_throughput() -> None:
    sweep = pd.DataFrame(
        {
            "target_rate": [100, 200, 300, 400, 500],
            "p99": [0.010, 0.020, 0.040, 0.030, 0.200],
            "error_rate": [0.0, 0.0, 0.0, 0.05, 0.0],
            "valid": [True, True, True, True, False],
        }
    )
    assert stats.sustainable_throughput(sweep, slo_p99=0.05, error_budget=0.01) == 300
    assert stats.sustainable_throughput(sweep, slo_p99=0.05, error_budget=0.1) == 400
    assert stats.sustainable_throughput(sweep, slo_p99=0.015, error_budget=0.01) == 100
    assert stats.sustainable_throughput(sweep, slo_p99=0.001, error_budget=0.01) is None


@pytest.mark.sockets
def test_a_request_lost_on_a_reused_connection_is_marked_unanswered(server: Callable[[str], str]) -> None:
    """A failure a retrying client would have absorbed: nothing of a reply came back on a kept-alive connection that
    had served an earlier request. A failure on a fresh connection is not one of them."""
    spec = LoadSpec(rate=50, duration=0.6, warmup=0.0, connections=1)
    frame = run_load_sync(server("reuse-closes"), _fixed(), spec).to_frame()
    failed = frame[frame["error"].astype(str) != ""]
    assert len(failed) >= 10  # every second request lands on a reused connection the server then closes
    assert failed["unanswered"].all()
    assert not frame.loc[frame["error"].astype(str) == "", "unanswered"].any()

    fresh = run_load_sync(server("close"), _fixed(), spec).to_frame()
    assert (fresh["error"].astype(str) == "reset").all()
    assert not fresh["unanswered"].any()  # each failed on a connection that had served nothing


@pytest.mark.sockets
async def test_after_a_long_idle_the_generator_wakes_early_and_never_sends_early(
    server: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    armed: list[float] = []
    arm = PreciseTimer.arm

    def recording(timer: PreciseTimer, when: float) -> None:
        armed.append(when)
        arm(timer, when)

    monkeypatch.setattr(PreciseTimer, "arm", recording)
    result = await run_load(server("ok"), _Fixed(), LoadSpec(rate=50, duration=0.3, warmup=0.0, arrival="constant"))
    intended, dispatched = result.records["intended"], result.records["dispatched"]
    woken = {round(when - result.t0, 6) for when in armed}
    # Requests are 20 ms apart: the timer is armed 0.2 ms before each one after the first, then the loop polls.
    assert all(round(due - 200e-6, 6) in woken for due in intended[1:])
    assert (dispatched >= intended).all()  # polling until due: never sent ahead of its time

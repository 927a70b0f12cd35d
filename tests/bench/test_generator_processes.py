"""The generator in processes of its own: the shared schedule and its merged records, the shared clock, pinning,
the workloads' descriptions, dying with the harness, and response framing (HEAD, 204, 304, 1xx) against real
server processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import numpy as np
import psutil
import pytest

from bench.common import stats
from bench.load.loadgen import LoadResult, LoadSpec, Request, schedule
from bench.load.processes import (
    GeneratorError,
    PartRecords,
    assign_cpus,
    merge,
    run_load_sync,
    split_connections,
    stop_idle,
)
from bench.load.workload import FixedWorkload, ShopWorkload, StartsOnFirstRequest
from bench.system.supervisor import free_port
from tests.bench.test_loadgen import RECORD_COLUMNS

DEADLINE = 10.0

# A tiny HTTP/1.1 server (run with ``python -c``; prints its port, counts connections on GET /connections). Per
# path: /head-like answers 200 with a Content-Length of 13 and no body whatever the method (as a server answers HEAD),
# /204 and /304 announce a body they do not send, /continue sends "100 Continue" before its 200, anything else 200 "ok".
FRAMING_SERVER = r"""
import asyncio, httptools, uvloop

connections = 0


class Server(asyncio.Protocol):
    def connection_made(self, transport):
        global connections
        connections += 1
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_url(self, url):
        self.path = url.decode()

    def on_message_complete(self):
        if self.path == "/head-like":
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n"
        elif self.path in ("/204", "/304"):
            reply = b"HTTP/1.1 %s X\r\nContent-Length: 5\r\n\r\n" % self.path[1:].encode()
        elif self.path == "/continue":
            reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        elif self.path == "/connections":
            body = str(connections).encode()
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        else:
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        self.transport.write(reply)


async def main():
    server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


uvloop.run(main())
"""

# The services' own app (health, readiness, metrics) on uvicorn: a real server process answering HEAD /healthz.
APP_SERVER = (
    "import sys, uvicorn; from plumbing.web import build_app; "
    "uvicorn.run(build_app('probe', []), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')"
)

# A harness that plays a long load from two generator processes and prints the load's start; the test kills it.
HARNESS = r"""
import sys
from bench.load.loadgen import LoadSpec, Request
from bench.load.processes import run_load_sync
from bench.load.workload import FixedWorkload, StartsOnFirstRequest
workload = StartsOnFirstRequest(FixedWorkload(Request("get", "GET", "/")), lambda: print("started", flush=True))
run_load_sync(sys.argv[1], workload, LoadSpec(rate=100, duration=60, warmup=0, processes=2))
"""


@contextlib.contextmanager
def _process(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)
        assert process.stdout is not None
        process.stdout.close()


@pytest.fixture
def framing_server() -> Iterator[str]:
    with _process([sys.executable, "-c", FRAMING_SERVER]) as process:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"test server failed to start (exit {process.poll()})"
        yield f"http://127.0.0.1:{port}"


def _is_gone(pid: int) -> bool:
    """Dead or a zombie (a container's init may never reap orphans)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


# ---- two processes, one load -----------------------------------------------------------------------------------


@pytest.mark.sockets
@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_two_processes_play_one_schedule_and_merge_into_one_result(framing_server: str, arrival: str) -> None:
    spec = LoadSpec(rate=400, duration=1.0, warmup=0.25, arrival=arrival, seed=3, processes=2, connections=9)
    workload = FixedWorkload(Request("get", "GET", "/"))
    result = run_load_sync(framing_server, workload, spec)
    rec = result.records

    expected = schedule(spec)
    assert list(rec) == RECORD_COLUMNS
    assert all(len(column) == len(expected) for column in rec.values())
    assert np.array_equal(rec["intended"], expected)  # the one schedule, in order, each arrival once
    assert (np.diff(rec["intended"]) > 0).all()  # ordered by intended time, no duplicates
    assert np.array_equal(rec["warmup"], expected < 0.25)
    assert (rec["status"] == 200).all()
    assert (rec["error"] == "").all()
    assert (rec["op"] == "get").all()
    assert (rec["intended"] <= rec["dispatched"]).all()
    assert (rec["dispatched"] <= rec["sent"]).all()
    assert (rec["sent"] < rec["done"]).all()
    assert workload.statuses == {200: len(expected)}  # both processes' workloads were heard
    assert result.connections == 9  # 5 + 4
    assert result.achieved_rate == pytest.approx(result.offered_rate, rel=0.01)
    if arrival == "constant":
        assert result.offered_rate == pytest.approx(400.0)
    assert result.summary()["requests"] == int((~rec["warmup"]).sum())


@pytest.mark.sockets
def test_every_process_sends_its_share_of_the_requests(framing_server: str) -> None:
    """Each process sends every other request over connections of its own: the server sees those of both."""
    spec = LoadSpec(rate=200, duration=0.5, warmup=0.0, processes=2, connections=2)
    result = run_load_sync(framing_server, FixedWorkload(Request("get", "GET", "/")), spec)
    assert (result.records["status"] == 200).all()
    with urllib.request.urlopen(f"{framing_server}/connections", timeout=5) as reply:
        assert int(reply.read()) == 2 + 1  # one per process, plus this request's


@pytest.mark.sockets
def test_records_larger_than_a_socket_buffer_come_back_whole(framing_server: str) -> None:
    spec = LoadSpec(rate=8000, duration=2.0, warmup=0.0, processes=2)  # 8000 records per process: 64 KiB a column
    result = run_load_sync(framing_server, FixedWorkload(Request("get", "GET", "/")), spec)
    assert len(result.records["done"]) == 16_000
    assert np.isfinite(result.records["done"]).all()
    assert result.to_frame()["status"].isin([0, 200]).all()


def test_merge_interleaves_parts_and_unifies_operation_names() -> None:
    spec = LoadSpec(rate=10, duration=0.5, warmup=0.2)  # 7 requests: process 0 has 0, 2, 4, 6; process 1 has 1, 3, 5
    ones = {"dispatched": np.arange(4.0), "sent": np.arange(4.0), "done": np.arange(4.0) + 0.5}
    twos = {"dispatched": np.arange(3.0), "sent": np.arange(3.0), "done": np.arange(3.0) + 0.5}
    ones["unanswered"] = np.array([0, 0, 1, 0], dtype=np.int8)  # its third request lost on a reused connection
    twos["unanswered"] = np.zeros(3, dtype=np.int8)
    zero = PartRecords(
        0,
        {**ones, "ops": np.array([0, 1, 0, 1]), "status": np.array([200] * 4), "error": np.array([0, 0, 5, 0])},
        ["a", "b"],
        None,
        2,
        None,
    )
    one = PartRecords(
        1,
        {**twos, "ops": np.array([0, 1, 1]), "status": np.array([0, 404, 404]), "error": np.array([3, 4, 4])},
        ["c", "a"],
        "next_request: boom",
        3,
        None,
    )
    result = merge(spec, [zero, one], t0=12.5)
    rec = result.records
    assert rec["op"].tolist() == ["a", "c", "b", "a", "a", "a", "b"]
    assert rec["error"].tolist() == ["", "timeout", "", "4xx", "5xx", "4xx", ""]
    assert rec["status"].tolist() == [200, 0, 200, 404, 200, 404, 200]
    assert rec["done"].tolist() == [0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3.5]
    assert rec["warmup"].tolist() == [True, True, False, False, False, False, False]
    assert rec["unanswered"].tolist() == [False, False, False, False, True, False, False]
    assert (result.connections, result.workload_error, result.t0) == (5, "next_request: boom", 12.5)
    short = PartRecords(1, {name: column[:2] for name, column in one.columns.items()}, ["c", "a"], None, 3, None)
    with pytest.raises(GeneratorError, match="sent 2 records, not 3"):
        merge(spec, [zero, short], t0=0.0)


def test_cpus_and_connections_are_split_between_processes() -> None:
    assert assign_cpus([1], 1) == [frozenset({1})]
    assert assign_cpus([1, 0], 2) == [frozenset({1}), frozenset({0})]
    assert assign_cpus([0, 1], 3) == [frozenset({0}), frozenset({1}), frozenset({0})]
    assert assign_cpus([0, 1, 2, 3], 2) == [frozenset({0, 2}), frozenset({1, 3})]
    assert assign_cpus([2, 3], 1) == [frozenset({2, 3})]
    assert split_connections(LoadSpec(rate=1, duration=1, connections=1), 2) == [1, 1]
    assert split_connections(LoadSpec(rate=1, duration=1, connections=9), 2) == [5, 4]
    # Little's law at each process's share of the rate: 1000 req/s x 10 ms x 4 = 40; at 500 req/s, 20 each.
    assert split_connections(LoadSpec(rate=1000, duration=1, expected_latency=0.01), 2) == [20, 20]


def _workers() -> list[psutil.Process]:
    return [c for c in psutil.Process().children() if "bench.load.worker" in " ".join(c.cmdline())]


@pytest.mark.sockets
def test_processes_are_pinned_kept_for_the_next_load_and_stopped_on_request(framing_server: str) -> None:
    stop_idle()
    cpu = max(os.sched_getaffinity(0))
    seen: list[tuple[int, list[int]]] = []

    def look() -> None:  # at the load's start, in the harness: the generator processes run
        seen.extend((child.pid, child.cpu_affinity()) for child in _workers())

    spec = LoadSpec(rate=50, duration=0.2, warmup=0.0, cpus=(cpu,), processes=2)
    for _ in range(2):
        workload = StartsOnFirstRequest(FixedWorkload(Request("get", "GET", "/")), look)
        result = run_load_sync(framing_server, workload, spec)
        assert (result.to_frame()["status"] == 200).all()
    assert [affinity for _, affinity in seen] == [[cpu]] * 4
    assert {pid for pid, _ in seen[:2]} == {pid for pid, _ in seen[2:]}  # the second load reused both processes
    assert len(_workers()) == 2  # idle between loads
    stop_idle()
    assert not _workers()


@pytest.mark.sockets
def test_processes_started_by_another_thread_are_not_kept(framing_server: str) -> None:
    stop_idle()
    spec = LoadSpec(rate=50, duration=0.2, warmup=0.0, processes=1)
    done: list[LoadResult] = []
    thread = threading.Thread(
        target=lambda: done.append(run_load_sync(framing_server, FixedWorkload(Request("get", "GET", "/")), spec))
    )
    thread.start()
    thread.join()
    assert len(done) == 1
    assert not _workers()


# ---- one clock -------------------------------------------------------------------------------------------------


@pytest.mark.sockets
def test_the_harness_starts_on_the_generators_clock(framing_server: str) -> None:
    called: list[float] = []
    workload = StartsOnFirstRequest(FixedWorkload(Request("get", "GET", "/")), lambda: called.append(time.monotonic()))
    result = run_load_sync(framing_server, workload, LoadSpec(rate=100, duration=0.3, warmup=0.0, processes=2))

    assert workload.started
    assert workload.t0 == result.t0
    assert len(called) == 1
    # Called at the load's time zero, in this process; the bounds leave room for a busy machine's scheduling delays.
    assert 0.0 <= called[0] - result.t0 < 0.05
    # The records of both processes count from that same zero (CLOCK_MONOTONIC is system-wide).
    assert 0.0 <= result.records["dispatched"][0] < 0.05
    assert 0.0 <= result.records["dispatched"][1] - 0.01 < 0.05


# ---- the shop workload travels as its state --------------------------------------------------------------------


def _answer(workload: ShopWorkload, n: int, first_id: int) -> list[Request]:
    requests = []
    for i in range(n):
        request = workload.next_request()
        if request.op == "checkout":
            workload.on_response(request, 201, json.dumps({"id": first_id + i}).encode())
        requests.append(request)
    return requests


def test_a_shop_workload_run_by_one_process_continues_as_if_it_ran_here() -> None:
    here = ShopWorkload(20, 50, seed=5, key_prefix="k")
    expected = _answer(here, 300, 1000) + _answer(here, 300, 2000)

    harness = ShopWorkload(20, 50, seed=5, key_prefix="k")
    source = harness.describe(1)
    child = source.build(0, 1)
    first = _answer(child, 300, 1000)
    harness.absorb([source.outcome(child)])
    second = _answer(harness, 300, 2000)
    assert first + second == expected
    assert harness.order_ids == here.order_ids


def test_shop_workloads_of_several_processes_never_share_a_key() -> None:
    harness = ShopWorkload(20, 50, mix="checkout-heavy", seed=5, key_prefix="k")
    keys: list[str] = []
    for _ in range(2):  # two runs of two processes each
        source = harness.describe(2)
        children = [source.build(part, 2) for part in range(2)]
        requests = [_answer(child, 200, 1000 * (part + 1)) for part, child in enumerate(children)]
        assert requests[0] != requests[1]  # each process draws from its own seed
        keys += [dict(r.headers)["Idempotency-Key"] for batch in requests for r in batch if r.op == "checkout"]
        harness.absorb([source.outcome(child) for child in children])
    assert len(keys) == len(set(keys)) > 100
    assert {key.rsplit("-", 1)[0] for key in keys} == {"k.0", "k.1"}
    assert len(harness.order_ids) == len(keys)  # the orders of every process and run are known to the harness


# ---- dying with the harness ------------------------------------------------------------------------------------


@pytest.mark.sockets
def test_generator_processes_die_with_a_killed_harness(framing_server: str) -> None:
    with _process([sys.executable, "-c", HARNESS, framing_server]) as harness:
        assert harness.stdout is not None
        assert harness.stdout.readline().strip() == "started"
        workers = [c.pid for c in psutil.Process(harness.pid).children() if "bench.load.worker" in c.cmdline()]
        assert len(workers) == 2
        assert not any(_is_gone(pid) for pid in workers)

        os.kill(harness.pid, signal.SIGKILL)  # no cleanup runs: only the kernel (PDEATHSIG) can stop them
        harness.wait(timeout=DEADLINE)
        for pid in workers:
            _wait_until(lambda pid=pid: _is_gone(pid), f"generator process {pid} is gone")


# ---- framing: responses without a body -------------------------------------------------------------------------


@pytest.mark.sockets
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("HEAD", "/head-like", 200), ("GET", "/204", 204), ("GET", "/304", 304), ("GET", "/continue", 200)],
)
def test_responses_without_a_body_complete_at_once(framing_server: str, method: str, path: str, status: int) -> None:
    spec = LoadSpec(rate=50, duration=0.2, warmup=0.0, timeout=2.0, connections=2)
    result = run_load_sync(framing_server, FixedWorkload(Request("x", method, path)), spec)
    frame = result.to_frame()
    assert (frame["status"] == status).all()
    assert (frame["error"] == ("" if status < 400 else "4xx")).all()
    assert stats.latencies(frame).max() < 0.5  # a body awaited in vain would be the 2 s timeout
    # The connections stay usable: 10 requests over the 2 opened before the start, none reopened.
    with urllib.request.urlopen(f"{framing_server}/connections", timeout=5) as reply:
        assert int(reply.read()) == 2 + 1


@pytest.mark.sockets
def test_head_healthz_of_a_real_service_answers_in_about_a_millisecond() -> None:
    port = free_port()
    with _process([sys.executable, "-c", APP_SERVER, str(port)]):
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        _wait_until(healthy, "the service is up")
        spec = LoadSpec(rate=20, duration=0.5, warmup=0.0, timeout=2.0)
        result = run_load_sync(url, FixedWorkload(Request("healthz", "HEAD", "/healthz")), spec)
        frame = result.to_frame()
        assert len(frame) == 10
        assert (frame["status"] == 200).all()
        assert result.summary()["error_rate"] == 0.0
        latency = stats.latencies(frame)
        assert np.median(latency) < 0.01  # about a millisecond; a body awaited in vain would be the 2 s timeout
        assert latency.max() < 0.5

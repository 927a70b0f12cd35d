"""Resource accounting against tiny real child processes, and the CPU split and pinning helpers."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from bench.system.resources import ResourceMeter, Usage, cpu_per_request, default_cpu_split, pin_self

Spawn = Callable[[str], subprocess.Popen[str]]

ALLOCATION = 64 * 1024 * 1024

# Waits for a line, allocates and touches ALLOCATION bytes, frees them, says so, then waits again.
ALLOCATE_AND_FREE = f"""
import sys
sys.stdin.readline()
block = b"x" * {ALLOCATION}
del block
print("freed", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start `python -c script` children with pipes; every one is killed and reaped at teardown."""
    children: list[subprocess.Popen[str]] = []

    def start(script: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.communicate(timeout=10)


def send_line(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def test_cpu_of_a_busy_child(spawn: Spawn) -> None:
    busy = spawn("while True: pass")
    meter = ResourceMeter({"busy": busy.pid}, interval=0.05)

    meter.start()
    time.sleep(0.3)  # the measurement window, not a wait for readiness
    usage = meter.stop()

    assert usage["busy"].cpu_seconds > 0
    assert usage["busy"].peak_rss_bytes > 0
    assert not usage["busy"].exited


# On each line, burns 23 ms of its own CPU (not a whole number of 10 ms clock ticks) and prints what it measured.
BURN_23_MS = """
import sys, time
while sys.stdin.readline():
    start = time.process_time()
    while time.process_time() - start < 0.023:
        pass
    print(time.process_time() - start, flush=True)
"""


def test_cpu_is_measured_finer_than_the_clock_tick(spawn: Spawn) -> None:
    burner = spawn(BURN_23_MS)
    assert burner.stdout is not None
    send_line(burner)
    burner.stdout.readline()  # started and warm
    meter = ResourceMeter({"burner": burner.pid}, interval=1.0)

    meter.start()
    send_line(burner)
    burned = float(burner.stdout.readline())
    usage = meter.stop()

    # On tick counters the difference is 20 or 30 ms; the process's clock gives 23 ms and the line's handling.
    assert burned <= usage["burner"].cpu_seconds < burned + 0.002


# A server that works in a forked child, as PostgreSQL's postmaster does in a backend per connection: the parent
# sleeps; on each line, its long-lived child burns CPU until the line's count of seconds has passed.
FORKING_SERVER = """
import os, sys, time
read, write = os.pipe()
if os.fork() == 0:
    os.close(write)
    while data := os.read(read, 64):  # until the parent is gone
        seconds = float(data)
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        print("done", flush=True)
    os._exit(0)
for line in sys.stdin:
    os.write(write, line.strip().encode())
"""


def test_cpu_of_a_server_counts_the_children_it_forked(spawn: Spawn) -> None:
    server = spawn(FORKING_SERVER)
    assert server.stdin is not None
    assert server.stdout is not None
    meter = ResourceMeter({"server": server.pid}, interval=0.05)
    meter.start()
    server.stdin.write("0.3\n")
    server.stdin.flush()
    assert server.stdout.readline().strip() == "done"
    usage = meter.stop()
    # The child's 0.3 s of CPU, all inside the window (the parent itself only read a line and wrote to a pipe).
    assert 0.25 <= usage["server"].cpu_seconds <= 0.6


def test_peak_rss_catches_an_allocation_freed_inside_the_window(spawn: Spawn) -> None:
    child = spawn(ALLOCATE_AND_FREE)
    meter = ResourceMeter({"alloc": child.pid}, interval=0.05)

    meter.start()
    send_line(child)
    assert child.stdout is not None
    assert child.stdout.readline() == "freed\n"
    usage = meter.stop()

    assert usage["alloc"].peak_rss_bytes >= ALLOCATION
    assert psutil.Process(child.pid).memory_info().rss < ALLOCATION  # really freed: only the peak saw it


def test_child_dying_inside_the_window_is_kept_and_marked(spawn: Spawn) -> None:
    dying = spawn("import sys; sys.stdin.readline(); sum(range(3_000_000))")
    steady = spawn("import sys; sys.stdin.readline()")
    meter = ResourceMeter({"dying": dying.pid, "steady": steady.pid}, interval=0.02)

    meter.start()
    send_line(dying)
    dying.wait(timeout=10)  # reaped: the pid is gone, not even a zombie
    usage = meter.stop()

    assert usage["dying"].exited
    assert usage["dying"].cpu_seconds >= 0
    assert usage["dying"].peak_rss_bytes > 0
    assert not usage["steady"].exited


def test_pid_gone_before_start_does_not_crash(spawn: Spawn) -> None:
    gone = spawn("pass")
    gone.wait(timeout=10)
    meter = ResourceMeter({"gone": gone.pid})

    meter.start()
    assert meter.stop() == {"gone": Usage(0.0, 0, exited=True)}


def test_meter_start_stop_misuse() -> None:
    meter = ResourceMeter({"me": os.getpid()})
    with pytest.raises(RuntimeError, match="not started"):
        meter.stop()
    meter.start()
    with pytest.raises(RuntimeError, match="already started"):
        meter.start()
    assert meter.stop()["me"].peak_rss_bytes > 0


def test_cpu_per_request() -> None:
    usage = {"gateway": Usage(2.0, 1), "orders": Usage(1.0, 1)}

    assert cpu_per_request(usage, 1000) == {"gateway": 0.002, "orders": 0.001, "total": 0.003}
    assert all(math.isnan(value) for value in cpu_per_request(usage, 0).values())
    with pytest.raises(ValueError, match="total"):
        cpu_per_request({"total": Usage(1.0, 1)}, 1)
    with pytest.raises(ValueError, match=">= 0"):
        cpu_per_request(usage, -1)


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({3}, ({3}, {3})),
        ({0, 1}, ({0}, {1})),
        ({0, 1, 2}, ({0, 1}, {2})),
        ({0, 1, 2, 3}, ({0, 1}, {2, 3})),
        ({2, 5, 7, 9}, ({2, 5}, {7, 9})),
    ],
)
def test_default_cpu_split(
    monkeypatch: pytest.MonkeyPatch, available: set[int], expected: tuple[set[int], set[int]]
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: available)

    assert default_cpu_split() == (frozenset(expected[0]), frozenset(expected[1]))


def test_pin_self_pins_threads_that_already_run() -> None:
    original = os.sched_getaffinity(0)
    target = frozenset({min(original)})
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert worker.native_id is not None
        pin_self(target)
        assert os.sched_getaffinity(0) == target
        assert os.sched_getaffinity(worker.native_id) == target
    finally:
        pin_self(frozenset(original))
        release.set()
        worker.join()
    assert os.sched_getaffinity(0) == original


def test_pin_self_none_changes_nothing() -> None:
    before = os.sched_getaffinity(0)
    pin_self(None)
    assert os.sched_getaffinity(0) == before

"""The open-loop generator in processes of its own, pinned, with nothing else in them.

The harness's interpreter also runs a resource sampler, fault timers, restart threads and a progress bar; a
generator sharing that interpreter shares its GIL and its garbage collections, and every pause shows as send lag.
``run_in_processes`` starts ``spec.processes`` generator processes (``python -m bench.load.worker``), each pinned
with ``os.sched_setaffinity``, hands each a ``Job`` over a socket pair (the spec, the workload's small picklable
description, its share of the schedule), and collects their records as raw array bytes.

Why a fresh interpreter (``subprocess`` running ``python -m bench.load.worker``) rather than ``multiprocessing``:
a spawn or forkserver child re-imports the harness's main module (the ``archbench`` command, pytest), which is
slower and can run arbitrary code at import, while ``-m bench.load.worker`` imports the engine alone (about 0.2 s,
no pandas); a plain fork of a harness with threads running would copy their locks. The protocol is a handful of
framed messages (``multiprocessing.connection.Connection`` over a ``socket.socketpair``), so nothing else of
multiprocessing is needed.

A process that played its load without fault waits, idle, for the next load of the same interpreter (each load
starting a fresh one cost 0.15-0.2 s of the generator's CPU: about 8 s of a quick run's 90). Only processes
started by the main thread are kept: the kernel kills a process when the thread that started it ends
(``PR_SET_PDEATHSIG``), and a thread's process could die under the next load. :func:`stop_idle` ends the idle
ones (also at exit); a process that failed or was interrupted is never kept.

Several processes share one load: process ``p`` of ``n`` sends requests ``p``, ``p + n``, ``p + 2n``, ... of the one
schedule, so the merged arrivals are exactly those of a single generator at the full rate, over its share of the
connections. The load's time zero is chosen by the harness once every process has opened its connections, a little
ahead (``START_MARGIN``), and sent to all of them as an absolute ``time.monotonic()`` value: CLOCK_MONOTONIC is
system-wide on Linux, so the records of every process, and the fault timers and restart threads of the harness,
share one clock. ``on_start(t0)`` is called in the harness at that time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import uvloop

from bench.common.names import ERROR_CLASSES
from bench.load.loadgen import (
    LoadResult,
    LoadSpec,
    RemoteWorkload,
    Workload,
    WorkloadSource,
    _resolve,
    pool_size,
    run_load,
    schedule,
)
from bench.load.worker import COLUMNS, Job

#: Seconds between the moment every process is ready and the load's time zero: enough for the "go" to reach them
#: (an idle process reads it in 0.1-0.3 ms, 3 ms behind one of this VM's stalls; a late one delays only the warm-up's
#: first requests). Every load pays it: 50 ms was 3 s of a quick run.
START_MARGIN: Final = 0.01
#: Seconds a process may take to start and open its connections.
READY_TIMEOUT: Final = 60.0
#: Seconds after the last request's timeout that a process may take to send its records.
RESULT_GRACE: Final = 60.0

_DTYPES: Final = {"i": np.int32, "d": np.float64, "h": np.int16, "b": np.int8}


class GeneratorError(RuntimeError):
    """A generator process failed (its traceback is in the message) or died."""


def split_connections(spec: LoadSpec, parts: int) -> list[int]:
    """Each process's connections: its share of ``spec.connections``, else ``pool_size`` at its share of the rate.

    A fixed pool is divided as evenly as possible, at least one connection each.
    """
    if spec.connections is None:
        share = LoadSpec(rate=spec.rate / parts, duration=1.0, expected_latency=spec.expected_latency)
        return [pool_size(share)] * parts
    base, extra = divmod(spec.connections, parts)
    return [max(1, base + (part < extra)) for part in range(parts)]


def assign_cpus(cpus: Sequence[int], parts: int) -> list[frozenset[int]]:
    """The CPUs of each process: one each, round robin, when ``parts >= len(cpus)``; else every ``parts``-th CPU."""
    ordered = list(dict.fromkeys(cpus))
    if not ordered:
        raise ValueError("no CPU to pin the generator processes to")
    if parts >= len(ordered):
        return [frozenset({ordered[part % len(ordered)]}) for part in range(parts)]
    return [frozenset(ordered[part::parts]) for part in range(parts)]


@dataclass
class PartRecords:
    """What one generator process sent back: its share of the records (in its schedule order) and its header."""

    part: int
    columns: dict[str, npt.NDArray[Any]]
    op_names: list[str]
    workload_error: str | None
    connections: int
    outcome: object
    cpu: float = math.nan  # CPU seconds it used from the time zero to its end


def merge(spec: LoadSpec, parts: Sequence[PartRecords], t0: float) -> LoadResult:
    """One ``LoadResult`` from the records of ``len(parts)`` processes that shared ``spec``'s schedule."""
    intended = schedule(spec)
    n, count = len(intended), len(parts)
    names: dict[str, int] = {}
    for part in parts:
        for name in part.op_names:
            names.setdefault(name, len(names))
    ops = np.zeros(n, dtype=np.int32)
    columns = {name: np.full(n, math.nan) for name in ("dispatched", "sent", "done")}
    status, error = np.zeros(n, dtype=np.int16), np.zeros(n, dtype=np.int8)
    unanswered = np.zeros(n, dtype=bool)
    for part in parts:
        rows = slice(part.part, n, count)
        expected = len(range(n)[rows])
        if len(part.columns["done"]) != expected:
            raise GeneratorError(
                f"generator process {part.part} sent {len(part.columns['done'])} records, not {expected}"
            )
        codes = np.array([names[name] for name in part.op_names] or [0], dtype=np.int32)
        ops[rows] = codes[part.columns["ops"]]
        for name in columns:
            columns[name][rows] = part.columns[name]
        status[rows], error[rows] = part.columns["status"], part.columns["error"]
        unanswered[rows] = part.columns["unanswered"].astype(bool)
    records: dict[str, npt.NDArray[Any]] = {
        "op": np.array(list(names) or [""], dtype=object)[ops],
        "intended": intended,
        **columns,
        "status": status,
        "error": np.array(ERROR_CLASSES, dtype=object)[error],
        "unanswered": unanswered,
        "warmup": intended < spec.warmup,
    }
    workload_error = next((part.workload_error for part in parts if part.workload_error is not None), None)
    cpu = sum(part.cpu for part in parts)
    return LoadResult(spec, records, sum(part.connections for part in parts), workload_error, t0, cpu)


class _Process:
    """One generator process and the harness's end of its socket."""

    def __init__(self, part: int) -> None:
        self.part = part
        self.keepable = threading.current_thread() is threading.main_thread()
        ours, theirs = socket.socketpair()
        with theirs:
            argv = [sys.executable, "-m", "bench.load.worker", str(theirs.fileno()), str(os.getpid())]
            # Started from the calling thread: PR_SET_PDEATHSIG then fires when that thread ends, and it waits here
            # until the process has sent its records (or kills it).
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=[theirs.fileno()]
            )
        self.conn = Connection(ours.detach())

    def send(self, message: object) -> None:
        self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def receive_bytes(self, deadline: float, what: str) -> bytes:
        if not self.conn.poll(max(0.0, deadline - time.monotonic())):
            raise GeneratorError(f"generator process {self.part} (pid {self.popen.pid}) sent no {what} in time")
        try:
            return self.conn.recv_bytes()
        except (EOFError, OSError) as exc:
            code = self.popen.wait(timeout=5)
            raise GeneratorError(f"generator process {self.part} exited with status {code} before its {what}") from exc

    def receive(self, deadline: float, what: str) -> tuple[Any, ...]:
        message = pickle.loads(self.receive_bytes(deadline, what))
        if not isinstance(message, tuple) or not message:
            raise GeneratorError(f"generator process {self.part}: unexpected message {message!r}")
        if message[0] == "error":
            raise GeneratorError(f"generator process {self.part} failed:\n{message[1]}")
        if message[0] != what:
            raise GeneratorError(f"generator process {self.part}: expected {what!r}, got {message[0]!r}")
        return message

    def records(self, deadline: float) -> PartRecords:
        header: dict[str, Any] = self.receive(deadline, "result")[1]
        columns = {}
        for name, code in COLUMNS:
            data, dtype = self.receive_bytes(deadline, "result"), np.dtype(_DTYPES[code])
            if len(data) != header["count"] * dtype.itemsize:  # not a column: the process failed while sending
                raise GeneratorError(f"generator process {self.part} sent a broken {name} column")
            columns[name] = np.frombuffer(data, dtype=dtype)
        return PartRecords(
            self.part,
            columns,
            header["op_names"],
            header["workload_error"],
            header["connections"],
            header["outcome"],
            header["cpu"],
        )

    def stop(self, kill: bool) -> None:
        """Close the socket and wait for the process, after killing it if ``kill`` or if it does not exit soon."""
        self.conn.close()
        if kill:
            self.popen.kill()
        try:
            self.popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


_idle: list[_Process] = []
_idle_lock = threading.Lock()


def _take(part: int) -> _Process:
    """An idle process of this interpreter that is still alive, as process ``part`` of the next load, else a new
    one."""
    if threading.current_thread() is threading.main_thread():
        with _idle_lock:
            while _idle:
                process = _idle.pop()
                if process.popen.poll() is None:
                    process.part = part
                    return process
                process.stop(kill=True)
    return _Process(part)


def _release(processes: Sequence[_Process], played: bool) -> None:
    """Keep the processes of a load played to its end, idle for the next one; stop every other."""
    for process in processes:
        if played and process.keepable and process.popen.poll() is None:
            with _idle_lock:
                _idle.append(process)
            continue
        with contextlib.suppress(OSError):
            process.stop(kill=not played)


def stop_idle() -> None:
    """Stop the generator processes kept idle between loads (they exit at the end of their socket)."""
    with _idle_lock:
        idle = list(_idle)
        _idle.clear()
    for process in idle:
        with contextlib.suppress(OSError):
            process.stop(kill=False)


atexit.register(stop_idle)


def _sleep_until(when: float) -> None:
    while (remaining := when - time.monotonic()) > 0:
        time.sleep(remaining)


def run_in_processes(
    base_url: str,
    source: WorkloadSource,
    spec: LoadSpec,
    on_start: Callable[[float], None] | None = None,
) -> tuple[LoadResult, list[object]]:
    """Offer ``spec``'s load to ``base_url`` from ``spec.processes`` generator processes; (records, outcomes).

    Each process builds its workload with ``source.build(part, parts)`` and returns ``source.outcome(workload)``;
    the outcomes come back in process order. ``on_start(t0)`` runs here at the load's time zero ``t0`` (also in
    the result, ``LoadResult.t0``). When it returns, its processes wait idle for the next load (see the module's
    docstring); when it raises (Ctrl-C included), every one of them is gone.
    """
    _resolve(base_url)  # a malformed URL fails here, not in a child
    parts = spec.processes
    cpus = assign_cpus(spec.cpus or sorted(os.sched_getaffinity(0)), parts)
    connections = split_connections(spec, parts)
    processes: list[_Process] = []
    collected: list[PartRecords] = []
    try:
        for part in range(parts):
            processes.append(_take(part))
        for part, process in enumerate(processes):
            process.send(Job(base_url, source, spec, part, parts, connections[part], cpus[part]))
        ready_by = time.monotonic() + READY_TIMEOUT
        for process in processes:
            process.receive(ready_by, "ready")
        t0 = time.monotonic() + START_MARGIN
        for process in processes:
            process.send(("go", t0))
        if on_start is not None:
            _sleep_until(t0)
            on_start(t0)
        last = float(schedule(spec)[-1])
        done_by = t0 + last + spec.timeout + RESULT_GRACE
        collected = [process.records(done_by) for process in processes]
    finally:
        _release(processes, played=len(collected) == parts)
    return merge(spec, collected, t0), [part.outcome for part in collected]


__all__ = [
    "GeneratorError",
    "PartRecords",
    "assign_cpus",
    "merge",
    "run_in_processes",
    "split_connections",
    "stop_idle",
]


def run_load_sync(base_url: str, workload: Workload, spec: LoadSpec) -> LoadResult:
    """Offer ``spec``'s load to ``base_url``; the harness's entry point.

    A workload that can describe itself (``RemoteWorkload``: the shop's workloads and the fixed ones of
    ``bench.load.workload``) runs in ``spec.processes`` generator processes of their own, pinned to ``spec.cpus``
    (:func:`run_in_processes`), so that nothing else in this interpreter (a sampler, a fault
    timer, a progress bar) shares the generator's interpreter. Any other workload runs here, in a fresh uvloop
    event loop, with one process only.
    """
    source = workload.describe(spec.processes) if isinstance(workload, RemoteWorkload) else None
    if source is not None:
        assert isinstance(workload, RemoteWorkload)
        result, outcomes = run_in_processes(base_url, source, spec, on_start=workload.load_started)
        workload.absorb(outcomes)
        return result
    if spec.processes != 1:
        raise ValueError(
            f"{spec.processes} generator processes need a workload that describes itself (RemoteWorkload); "
            f"{type(workload).__name__} does not"
        )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_load(base_url, workload, spec))

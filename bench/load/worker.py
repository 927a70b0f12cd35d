"""One generator process: ``python -m bench.load.worker FD PARENT_PID`` (started by ``bench.load.processes``).

It talks to the harness over the socket ``FD`` (``multiprocessing.connection`` framing):

1. in: a pickled ``Job`` (the load spec, the workload's description, its share of the schedule, its CPUs);
2. out: ``("ready",)`` once its connections are open (or ``("error", text)`` and exit);
3. in: ``("go", t0)``: the load's time zero, a ``time.monotonic()`` value shared by every process of the machine;
4. out: ``("result", header)`` then one message per record column, the raw bytes of its array (the request records
   never travel as Python objects);
5. then it waits for the next ``Job`` (1.), and exits when the socket reaches end of file instead.

It imports no more than the engine needs (no pandas), pins itself to each job's CPUs, collects its garbage after
each load and before it reports the result (so that it is idle once the harness has the result), and dies with the
harness: the kernel kills it when the thread that started it ends (``PR_SET_PDEATHSIG``), and it exits if its socket
reaches end of file, during a load included.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import uvloop

from bench.load.loadgen import LoadSpec, WorkloadSource, _resolve, _Run

_PR_SET_PDEATHSIG = 1
#: Exit status when the harness went away mid-run.
ORPHANED = 70


@dataclass(frozen=True)
class Job:
    """What one generator process plays: requests ``part``, ``part + parts``, ... of ``spec``'s schedule."""

    base_url: str
    source: WorkloadSource
    spec: LoadSpec
    part: int
    parts: int
    connections: int
    cpus: frozenset[int]


#: The record columns a process sends back, in order, with their array typecodes (see ``_Run``).
COLUMNS = (
    ("ops", "i"),
    ("dispatched", "d"),
    ("sent", "d"),
    ("done", "d"),
    ("status", "h"),
    ("error", "b"),
    ("unanswered", "b"),
)


def _die_with(parent_pid: int) -> None:
    """Ask the kernel for a SIGKILL when the parent (the thread that started us) ends; exit if it already has."""
    if sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(ORPHANED)


def _send(conn: Connection, message: object) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


async def _play(conn: Connection, job: Job) -> _Run:
    address, host = _resolve(job.base_url)
    workload = job.source.build(job.part, job.parts)
    engine = _Run(address, host, workload, job.spec, job.part, job.parts)
    loop = asyncio.get_running_loop()

    async def start() -> float:
        _send(conn, ("ready",))
        message = pickle.loads(conn.recv_bytes())  # blocks the loop, which has nothing to do before the start
        if not (isinstance(message, tuple) and message[0] == "go"):
            raise RuntimeError(f"expected ('go', t0), got {message!r}")
        # From now on the harness never writes: the socket becomes readable only at its end of file.
        loop.add_reader(conn.fileno(), os._exit, ORPHANED)
        return float(message[1])

    await engine.run(job.connections, start)
    loop.remove_reader(conn.fileno())
    # The loop made the socket non-blocking while it watched it: the records (megabytes) are sent blocking.
    os.set_blocking(conn.fileno(), True)
    return engine


def serve(conn: Connection, job: Job) -> None:
    """Play ``job`` and send its records back on ``conn``."""
    os.sched_setaffinity(0, job.cpus)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        engine = runner.run(_play(conn, job))
    # The load's garbage is collected now, before the harness hears that the load is done: collected after, it ran
    # beside the harness's stall probe of the next trial on this CPU, which then saw the scheduler's time slices
    # (stalls of 2.4-3.3 ms in a 50 ms probe) and took the trial for one the machine disturbed.
    gc.collect()
    header = {
        "op_names": list(engine.op_names),
        "workload_error": engine.workload_error,
        "connections": job.connections,
        "t0": engine.t0,
        "cpu": engine.cpu_used,
        "outcome": job.source.outcome(engine.workload),
        "count": len(engine.intended),
        "finished_at": time.monotonic(),
    }
    _send(conn, ("result", header))
    for name, _ in COLUMNS:
        conn.send_bytes(getattr(engine, name))


def main(argv: Sequence[str]) -> int:
    """Entry point: ``FD PARENT_PID``."""
    fd, parent_pid = int(argv[0]), int(argv[1])
    _die_with(parent_pid)
    conn = Connection(fd)
    try:
        while True:
            try:
                job = pickle.loads(conn.recv_bytes())
            except EOFError:  # the harness is done with this process
                break
            assert isinstance(job, Job)
            serve(conn, job)
    except Exception:
        _send(conn, ("error", traceback.format_exc()))
        return 1
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    # Run as the module proper, not as __main__: the job pickled by the harness names bench.load.worker.Job.
    from bench.load import worker

    sys.exit(worker.main(sys.argv[1:]))

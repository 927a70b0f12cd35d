"""Start, probe, stop and fault the processes of a deployment.

Every child runs in its own session, so one signal reaches the process and anything it forked, and asks the kernel
to SIGKILL it when the harness dies (``PR_SET_PDEATHSIG``). Together with :func:`shutdown_on_signals` and the
``with`` block of :class:`Supervisor`, neither Ctrl-C, SIGTERM, an exception nor a SIGKILL of the harness leaves a
process behind.

Typical use::

    with shutdown_on_signals(), Supervisor(run_dir) as sup:
        sup.start(ProcessSpec("orders", [...], port=free_port()))
        sup.wait_ready()
        ...

A run directory holds ``logs/<name>.log`` (stdout and stderr, appended across restarts) and ``pids.json``
(name -> pid of every running child; each pid is also its process group, so ``kill -STOP -<pid>`` by hand
reaches the whole process).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import json
import os
import queue
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import TypeVar, cast

__all__ = [
    "ProcessSpec",
    "ShutdownRequested",
    "StartupError",
    "Supervisor",
    "free_port",
    "shutdown_on_signals",
]

POLL_INTERVAL = 0.02
"""Seconds between readiness probes and between checks that a process has gone."""
KILL_TIMEOUT = 5.0
"""Seconds a SIGKILLed process may take to disappear before we call it a failure."""
LOG_TAIL_LINES = 30

_T = TypeVar("_T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it; nothing reserves it, so another process could still take it before the caller binds.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StartupError(RuntimeError):
    """A process exited before it was ready, or was not ready in time. The message ends with its log tail."""

    def __init__(self, name: str, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{name} {reason}; last lines of {log_path}:\n{log_tail}")
        self.name = name
        self.log_path = log_path
        self.log_tail = log_tail


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one process of a deployment."""

    name: str
    argv: Sequence[str]
    port: int | None = None
    """If set, the process is ready once ``GET http://127.0.0.1:{port}{ready_path}`` answers 200."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to (and overriding) the harness's environment."""
    cpus: frozenset[int] | None = None
    """CPU affinity of the process; None inherits the harness's."""
    cwd: Path | None = None
    ready_path: str = "/readyz"
    ready: Callable[[], bool] | None = None
    """If set (and ``port`` is not), the process is ready once this probe returns True (a database server)."""
    user: tuple[int, int] | None = None
    """``(uid, gid)`` to run as, without supplementary groups (a server that refuses to run as root); None: ours."""


# --- Shutdown on signals ---------------------------------------------------------------------------------------


class ShutdownRequested(KeyboardInterrupt):
    """Raised in the main thread when SIGINT, SIGTERM or SIGHUP asks the harness to stop.

    A KeyboardInterrupt, so code that already handles Ctrl-C handles a polite ``kill`` the same way.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class _ShutdownState:
    """Raises once on the first signal; while a cleanup runs, a signal is held until the cleanup is over.

    A second Ctrl-C arriving inside ``stop_all`` would otherwise abort the cleanup half-way.
    """

    def __init__(self) -> None:
        self.raised = False
        self.cleanups = 0
        self.held: int | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.raised or self.cleanups:
            self.held = self.held or signum
            return
        self.raised = True
        raise ShutdownRequested(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.cleanups += 1
        try:
            yield
        finally:
            self.cleanups -= 1
        if not self.cleanups and self.held is not None and not self.raised:
            signum, self.held, self.raised = self.held, None, True
            raise ShutdownRequested(signum)


_SHUTDOWN = _ShutdownState()
_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def shutdown_on_signals(signals: Iterable[signal.Signals] = _SHUTDOWN_SIGNALS) -> Iterator[None]:
    """Within the block, the given signals raise :class:`ShutdownRequested` in the main thread.

    Use it outside ``with Supervisor(...)`` so the supervisor's exit stops everything. Only the first signal
    raises; later ones are ignored so the cleanup can finish (a SIGKILL still works, and PDEATHSIG then takes the
    children down). SIGINT is installed explicitly because a shell may start background jobs with it ignored.
    Must be entered from the main thread. Previous handlers are restored on exit.
    """
    _SHUTDOWN.raised, _SHUTDOWN.held = False, None
    previous = {signum: signal.signal(signum, _SHUTDOWN.on_signal) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- Spawning --------------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved once in the parent so the child never has to load or look anything up."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return cast("Callable[..., int]", prctl)


_PRCTL = _load_prctl()


def _child_setup(parent_pid: int, cpus: frozenset[int] | None) -> None:
    """Runs in the child between fork and exec.

    The subprocess docs warn that a preexec function is unsafe when the parent has threads: the child holds a
    copy of every lock as it was at fork time, and any lock held by another thread stays held forever. This
    function only calls a libc function resolved before the fork, ``os.getppid``, ``os.kill`` and
    ``os.sched_setaffinity``: no import (CPython holds the import lock across the fork anyway), no logging, no
    I/O through Python objects, nothing that takes a Python-level lock. The GIL is reinitialised for the child
    by CPython, and glibc's malloc is made fork-safe by its own atfork handlers. That is the small, audited
    surface for which the warning does not bite; there is no fork-safe alternative for PDEATHSIG short of an
    extra exec through a launcher, which would add an interpreter start-up to every timed restart.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the harness died before prctl took effect: nobody would kill us
            os.kill(os.getpid(), _SIGKILL)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


class _SpawnThread:
    """One long-lived daemon thread that forks every child.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process (see prctl(2)). Forking
    from whichever thread calls ``start`` (an ``asyncio.to_thread`` worker, say) would kill the child when that
    worker retires. A daemon thread that lives as long as the process makes "parent died" mean "harness died".
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], _T]) -> Future[_T]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # not alive: we are a forked copy
                self._thread = threading.Thread(target=self._run, name="archbench-spawner", daemon=True)
                self._thread.start()
        future: Future[_T] = Future()
        self._jobs.put((job, cast("Future[object]", future)))
        return future

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller, who re-raises it
                future.set_exception(exc)


_SPAWNER = _SpawnThread()


def _result_despite_interrupts(future: Future[_T]) -> tuple[_T, BaseException | None]:
    """The job's result, even if a signal interrupts the wait; the interrupt is returned to re-raise later.

    A spawn in flight when Ctrl-C arrives must still be recorded, or the child would run untracked.
    """
    interrupt: BaseException | None = None
    while True:
        try:
            return future.result(), interrupt
        except BaseException as exc:
            if future.done() and future.exception() is exc:  # the spawn itself failed: nothing is running
                if interrupt is not None:
                    raise interrupt from exc
                raise
            interrupt = interrupt or exc


def _popen(spec: ProcessSpec, log_path: Path, env: Mapping[str, str], parent_pid: int) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=spec.cwd,
            start_new_session=True,  # own session and process group: pgid == pid
            # CPython switches user and group before it calls preexec_fn, and PDEATHSIG is reset by a change of
            # credentials (prctl(2)): set after the switch, it stays.
            user=spec.user[0] if spec.user else None,
            group=spec.user[1] if spec.user else None,
            extra_groups=[] if spec.user else None,
            preexec_fn=functools.partial(_child_setup, parent_pid, spec.cpus),
        )


# --- Watching and ending processes -----------------------------------------------------------------------------


def _has_exited(pid: int) -> bool:
    """Whether our child has exited, leaving it unreaped so its pid (and so its process group id) stays reserved."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for our child to exit, without reaping it. True if it has exited."""
    deadline = time.monotonic() + timeout
    if timeout > 0 and hasattr(os, "pidfd_open"):
        with contextlib.suppress(ProcessLookupError):
            pidfd = os.pidfd_open(pid)
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)  # readable once the process has exited
                poller.poll(timeout * 1000)
            finally:
                os.close(pidfd)
    while not _has_exited(pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(POLL_INTERVAL, remaining))
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is still in the group.

    Zombies hold no socket, and an init that never reaps orphans (as in some containers) would otherwise keep
    the group "alive" forever.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:
        entries = os.listdir("/proc")
    except FileNotFoundError:
        return True
    for entry in entries:
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(group) == pgid and state not in ("Z", "X"):
                return True
    return False


def _probe(port: int, path: str, timeout: float) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        with connection.getresponse() as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _describe_exit(status: int) -> str:
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"was killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"was killed by signal {-status}"


def _read_tail(path: Path, offset: int, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``path`` after ``offset``."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(offset, size - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    log_offset: int

    @property
    def pid(self) -> int:
        return self.proc.pid


# --- The supervisor --------------------------------------------------------------------------------------------


class Supervisor:
    """Starts, probes, faults and stops the processes of one run.

    Not thread-safe: drive one supervisor from one thread at a time. Leaving its ``with`` block stops every
    process it started, whatever the reason for leaving.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._specs: dict[str, ProcessSpec] = {}
        self._children: dict[str, _Child] = {}
        self._write_pids()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with _SHUTDOWN.deferred():
            self.stop_all()

    @property
    def pids_path(self) -> Path:
        return self.run_dir / "pids.json"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, spec: ProcessSpec) -> None:
        """Start a process (not waiting for readiness). Its output is appended to ``logs/<name>.log``."""
        if spec.name in self._children:
            raise ValueError(f"{spec.name} is already running (pid {self._children[spec.name].pid})")
        self._specs[spec.name] = spec
        log_path = self.log_path(spec.name)
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- archbench {stamp}: starting {spec.name}: {shlex.join(spec.argv)}\n".encode())
            offset = log.tell()
        env, parent_pid = {**os.environ, **spec.env}, os.getpid()
        future = _SPAWNER.submit(lambda: _popen(spec, log_path, env, parent_pid))
        proc, interrupt = _result_despite_interrupts(future)
        self._children[spec.name] = _Child(spec, proc, offset)
        self._write_pids()
        if interrupt is not None:
            raise interrupt

    def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 30.0) -> float:
        """Probe until every named process (default: all running) is ready; return the seconds waited.

        Raises :class:`StartupError` as soon as one of them exits, or when ``timeout`` expires. It does not stop
        the others: leaving the ``with`` block (or ``stop_all``) does.
        """
        started = time.monotonic()
        deadline = started + timeout
        pending = list(self._children) if names is None else list(names)
        for name in pending:
            self._child(name)
        while True:
            pending = [name for name in pending if not self._is_ready(name, deadline)]
            if not pending:
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                child = self._children[pending[0]]
                target = f"GET http://127.0.0.1:{child.spec.port}{child.spec.ready_path}"
                raise self._startup_error(child, f"was not ready after {timeout:.1f} s ({target})")
            time.sleep(POLL_INTERVAL)

    def pid(self, name: str) -> int:
        """Pid (and process group id) of a running process."""
        return self._child(name).pid

    def pids(self) -> dict[str, int]:
        """Name -> pid of every running process, as in ``pids.json``."""
        return {name: child.pid for name, child in self._children.items()}

    def reap_exited(self) -> dict[str, int]:
        """Reap the processes that exited on their own (crashed); name -> exit status, negative for a signal.

        Call it after a run to tell a crash from a clean measurement; ``pids.json`` is updated.
        """
        exited = [child for child in self._children.values() if _has_exited(child.pid)]
        for child in exited:
            self._reap(child)
        return {child.spec.name: child.proc.returncode for child in exited}

    def stop(self, name: str, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap it. No-op if not running."""
        self._spec(name)
        if name in self._children:
            self._terminate([self._children[name]], grace)

    def kill(self, name: str) -> None:
        """SIGKILL the process group at once and reap it (a crash, for fault injection)."""
        child = self._child(name)
        _signal_group(child.pid, signal.SIGKILL)
        self._reap(child)

    def pause(self, name: str) -> None:
        """SIGSTOP the process group (a hang, for fault injection)."""
        _signal_group(self._child(name).pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT the process group."""
        _signal_group(self._child(name).pid, signal.SIGCONT)

    def restart(self, name: str, timeout: float = 30.0) -> float:
        """Stop the process if it runs, start it again from the same spec, wait until ready.

        Returns the seconds from the new spawn to readiness (the time to stop the old process is excluded: it
        depends on the grace period, not on the system).
        """
        spec = self._spec(name)
        self.stop(name)
        spawned = time.monotonic()
        self.start(spec)
        self.wait_ready([name], timeout)
        return time.monotonic() - spawned

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop every running process, all at once, sharing one grace period."""
        self._terminate(list(reversed(self._children.values())), grace)

    # Internals ---------------------------------------------------------------------------------------------------

    def _spec(self, name: str) -> ProcessSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"no process named {name!r} was started") from None

    def _child(self, name: str) -> _Child:
        self._spec(name)
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(f"{name} is not running") from None

    def _is_ready(self, name: str, deadline: float) -> bool:
        child = self._child(name)
        if _has_exited(child.pid):
            self._reap(child)
            raise self._startup_error(child, f"{_describe_exit(child.proc.returncode)} before it was ready")
        if child.spec.port is None:
            return child.spec.ready is None or child.spec.ready()
        return _probe(child.spec.port, child.spec.ready_path, max(0.05, min(1.0, deadline - time.monotonic())))

    def _startup_error(self, child: _Child, reason: str) -> StartupError:
        log_path = self.log_path(child.spec.name)
        return StartupError(child.spec.name, reason, log_path, _read_tail(log_path, child.log_offset))

    def _terminate(self, children: list[_Child], grace: float) -> None:
        for child in children:
            _signal_group(child.pid, signal.SIGTERM)
            _signal_group(child.pid, signal.SIGCONT)  # a paused process would keep the SIGTERM pending
        deadline = time.monotonic() + grace
        for child in children:
            if not _wait_exit(child.pid, deadline - time.monotonic()):
                _signal_group(child.pid, signal.SIGKILL)
        errors = []
        for child in children:
            try:
                self._reap(child)
            except OSError as exc:  # keep going: the others must be stopped too
                errors.append(exc)
        if errors:
            raise errors[0]

    def _reap(self, child: _Child) -> None:
        """Kill what is left of the group, reap the leader, wait until no group member can hold a port."""
        if not _wait_exit(child.pid, KILL_TIMEOUT):
            _signal_group(child.pid, signal.SIGKILL)
            if not _wait_exit(child.pid, KILL_TIMEOUT):
                raise TimeoutError(f"{child.spec.name} (pid {child.pid}) survived SIGKILL for {KILL_TIMEOUT} s")
        # The leader is a zombie now, so its pid still names our group: sweep stragglers it forked.
        _signal_group(child.pid, signal.SIGKILL)
        child.proc.wait()
        deadline = time.monotonic() + KILL_TIMEOUT
        while _group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        del self._children[child.spec.name]
        self._write_pids()

    def _write_pids(self) -> None:
        """Rewrite pids.json atomically, so a person reading it never sees half a file."""
        temporary = self.pids_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.pids(), indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self.pids_path)

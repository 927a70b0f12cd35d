"""CPU-seconds and peak RSS per process over a measurement window, and CPU pinning.

CPU comes from the kernel's CPU-time clock of each process (``clock_gettime`` on another process's clock: every
thread's run time, to the nanosecond), read at the start and at the end of the window, whatever the sampling
interval; children the process has reaped count to the clock tick. Where that clock cannot be read (not Linux),
the per-process counters are used, exact to the clock tick (usually 10 ms). Peak RSS is sampled by a background
thread; on Linux the kernel's high-water mark (VmHWM) is reset at the start of the window and read at each sample,
so a spike between two samples is not missed.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["ResourceMeter", "Usage", "cpu_per_request", "default_cpu_split", "pin_self"]


@dataclass(frozen=True)
class Usage:
    """What one process consumed inside a measurement window."""

    cpu_seconds: float
    peak_rss_bytes: int
    exited: bool = False
    """The process ended (or was gone) inside the window: the figures cover only the part that was observed."""


def _process_clock(pid: int) -> int:
    """The clock id of the CPU time of process ``pid`` (all its threads), as ``clock_getcpuclockid(3)`` makes it on
    Linux (``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``); Python has no binding for that call."""
    return ((~pid) << 3) | 2


def _own_cpu(process: psutil.Process) -> float:
    """CPU-seconds of ``process`` itself (its threads, living and ended), to the nanosecond where the kernel's clock
    of it can be read, else to the tick.

    Why not the tick counters alone: they are rounded to 10 ms, and a 1-second low-load trial of the monolith takes
    about 90 ms of CPU, so each reading was off by up to 11% (two quick runs measured the colocated/monolith ratio of
    CPU per request as x1.67 and x1.37 on ticks).
    """
    try:
        return time.clock_gettime(_process_clock(process.pid))
    except OSError:  # gone, or no such clock here
        times = process.cpu_times()
        return float(times.user + times.system)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return _own_cpu(process) + float(times.children_user + times.children_system)


def _reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0). False if not possible here."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _kernel_peak_rss(pid: int) -> int | None:
    """VmHWM in bytes, or None if unavailable (not Linux, or the process is a zombie or gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from one pass over the process table."""
    children: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process.pid)
    return children


def _descendants_cpu(pid: int, children: Mapping[int, list[int]]) -> float:
    """CPU-seconds of the live descendants of ``pid`` (children, their children, ...), each counted by itself.

    A server that forks a process per connection (PostgreSQL's backends) does its work in them; the reaped ones are
    in its own ``children_*`` times already.
    """
    total, stack = 0.0, list(children.get(pid, ()))
    while stack:
        child = stack.pop()
        stack.extend(children.get(child, ()))
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += _own_cpu(psutil.Process(child))
    return total


class _Track:
    """The observations of one process and its descendants. Touched by the sampler thread only while it runs.

    CPU counts the whole tree (the process, its reaped children, its live descendants), read at the start and the end
    of the window; RSS is the process's own (a forked server's children share its memory, and their RSS would count
    the shared pages once per child).
    """

    def __init__(self, pid: int, children: Mapping[int, list[int]]) -> None:
        self.exited = False
        self.cpu_start = self.cpu_last = 0.0
        self.descendants_start = self.descendants_end = 0.0
        self.peak_rss = 0
        self.hwm_reset = False
        try:
            self.process: psutil.Process | None = psutil.Process(pid)
            self.hwm_reset = _reset_peak_rss(pid)
            self.cpu_start = self.cpu_last = _cpu_seconds(self.process)
            self.descendants_start = _descendants_cpu(pid, children)
        except psutil.NoSuchProcess:
            self.process, self.exited = None, True
        self.sample()

    def sample(self) -> None:
        if self.process is None or self.exited:
            return
        try:
            with self.process.oneshot():  # one read of /proc/<pid>/stat for both
                cpu = _cpu_seconds(self.process)
                zombie = self.process.status() == psutil.STATUS_ZOMBIE
            # A zombie still reports its final CPU times but no memory: keep the former, then stop.
            self.cpu_last, self.exited = cpu, zombie
            if not zombie:
                self.peak_rss = max(self.peak_rss, self._rss_peak())
        except psutil.NoSuchProcess:
            self.exited = True

    def _rss_peak(self) -> int:
        """The kernel's mark since the reset (it covers the time between samples), else the current RSS."""
        assert self.process is not None
        peak = _kernel_peak_rss(self.process.pid) if self.hwm_reset else None
        return peak if peak is not None else int(self.process.memory_info().rss)

    def finish(self, children: Mapping[int, list[int]]) -> Usage:
        self.sample()
        if self.process is not None and not self.exited and not self.process.is_running():  # pid reused
            self.exited = True
        if self.process is not None and not self.exited:
            self.descendants_end = _descendants_cpu(self.process.pid, children)
        else:  # its descendants are gone with it, or no longer its own
            self.descendants_end = self.descendants_start
        used = self.cpu_last - self.cpu_start + self.descendants_end - self.descendants_start
        return Usage(max(0.0, used), self.peak_rss, self.exited)


class ResourceMeter:
    """Measures CPU-seconds and peak RSS of named processes between :meth:`start` and :meth:`stop`.

    The sampler is a thread of the calling process; each sample costs a few /proc reads per process, holding
    the GIL briefly, so keep ``interval`` modest in a process that also generates load.
    """

    def __init__(self, pids: Mapping[str, int], interval: float = 0.1) -> None:
        self._pids = dict(pids)
        self._interval = interval
        self._tracks: dict[str, _Track] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Snapshot CPU counters, reset peak RSS marks and start the RSS sampler."""
        if self._thread is not None:
            raise RuntimeError("ResourceMeter already started")
        children = _children_by_parent()
        self._tracks = {name: _Track(pid, children) for name, pid in self._pids.items()}
        self._stopping.clear()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="archbench-meter", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Usage]:
        """Stop sampling; CPU-seconds consumed and peak RSS seen since :meth:`start`, per process name."""
        if self._thread is None:
            raise RuntimeError("ResourceMeter not started")
        self._stopping.set()
        self._thread.join()
        self._thread = None
        children = _children_by_parent()
        return {name: track.finish(children) for name, track in self._tracks.items()}

    def _sample_until_stopped(self) -> None:
        while not self._stopping.wait(self._interval):
            for track in self._tracks.values():
                track.sample()


def cpu_per_request(usage: Mapping[str, Usage], successes: int) -> dict[str, float]:
    """CPU-seconds per successful request, per process and as ``"total"``; NaN when nothing succeeded."""
    if successes < 0:
        raise ValueError(f"successes must be >= 0, got {successes}")
    if "total" in usage:
        raise ValueError('a process named "total" would be overwritten by the total')
    cpu = {name: u.cpu_seconds for name, u in usage.items()}
    cpu["total"] = sum(cpu.values())
    return {name: seconds / successes if successes else math.nan for name, seconds in cpu.items()}


def pin_self(cpus: frozenset[int] | None) -> None:
    """Pin every thread of this process to ``cpus`` (None: leave the affinity alone).

    ``os.sched_setaffinity(0, ...)`` pins only the calling thread on Linux; threads already running (a meter, an
    executor) would stay unpinned, so each thread is pinned by its id. Threads created later inherit the mask.
    """
    if cpus is None:
        return
    try:
        thread_ids = [int(tid) for tid in os.listdir("/proc/self/task")]
    except FileNotFoundError:
        thread_ids = [0]
    for tid in thread_ids:
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setaffinity(tid, cpus)


def default_cpu_split() -> tuple[frozenset[int], frozenset[int]]:
    """(system-under-test CPUs, load-generator CPUs) from this process's affinity.

    Two disjoint halves; with an odd count the system under test gets the extra CPU. With a single CPU both
    sides get it: the budgets are not disjoint and callers should warn.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) == 1:
        return frozenset(cpus), frozenset(cpus)
    middle = (len(cpus) + 1) // 2
    return frozenset(cpus[:middle]), frozenset(cpus[middle:])

"""The machine's own noise, measured per trial: CPU steal, stalls on the generator's CPU, idle wake-up latency.

On a cloud VM the host takes CPU away (steal), in stalls of 1-3 ms and in minutes of heavier steal; on a laptop
other work does the same. A trial measured in such a minute says more about the host than about the system under
test, so every trial records the noise around it, and a disturbed trial is repeated (a bounded number of times)
rather than kept as a red flag.

* **Steal**: the share of the trial's CPU time that the hypervisor gave to someone else, from the ``steal`` column
  of ``/proc/stat`` for the CPUs of the trial (system under test and generator).
* **Stalls**: a short spin loop on the calling thread's CPU (the generator's, where the harness runs) counts gaps over
  :data:`STALL_GAP`: time this CPU did not run us although we never yielded it.
* **Wake-up latency**: how late a short sleep ends. An idle CPU in a deep sleep state takes longer to wake up; a
  request sent every 5 ms pays it where back-to-back requests do not.

Thresholds follow what the quiet check of the development machine uses: a probe that loses over 0.5% of its time,
or has a stall over 2 ms, or steal over 2% of the trial, marks a trial as disturbed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

STALL_GAP: Final = 200e-6
#: Disturbed when the stall probe lost more than this share of its time (and more than :data:`MIN_LOST`) ...
MAX_STALL_SHARE: Final = 0.005
#: ... a share that a short probe cannot resolve below this many seconds lost: one routine stall of this VM
#: (0.2-0.5 ms) is 0.5% of a 50 ms probe, and took trials for disturbed ones on a machine the quiet check called quiet.
MIN_LOST: Final = 0.001
#: ... or saw one stall longer than this (seconds) ...
MAX_STALL: Final = 0.002
#: ... or the trial's CPUs lost more than this share to steal.
MAX_STEAL_SHARE: Final = 0.02

_STAT: Final = Path("/proc/stat")
_STEAL: Final = 7  # user nice system idle iowait irq softirq STEAL guest guest_nice


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative jiffies per CPU: all states, and steal alone."""

    total: dict[int, int]
    steal: dict[int, int]


def cpu_times(stat: Path = _STAT) -> CpuTimes:
    """Read the per-CPU lines of ``/proc/stat`` (empty on a system without it)."""
    total: dict[int, int] = {}
    steal: dict[int, int] = {}
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return CpuTimes(total, steal)
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        fields = [int(v) for v in rest.split()]
        cpu = int(name[3:])
        total[cpu] = sum(fields[:8])  # guest time is already counted in user
        steal[cpu] = fields[_STEAL] if len(fields) > _STEAL else 0
    return CpuTimes(total, steal)


def steal_share(before: CpuTimes, after: CpuTimes, cpus: Collection[int] | None = None) -> float:
    """The share of the CPUs' time stolen between two readings (0 when nothing elapsed or the kernel has no steal)."""
    chosen = [c for c in (cpus if cpus is not None else after.total) if c in before.total and c in after.total]
    elapsed = sum(after.total[c] - before.total[c] for c in chosen)
    stolen = sum(after.steal[c] - before.steal[c] for c in chosen)
    return stolen / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Stalls:
    """What a spin loop of ``seconds`` saw: gaps over :data:`STALL_GAP`, their total and the worst (seconds)."""

    seconds: float
    count: int
    lost: float
    worst: float

    @property
    def lost_share(self) -> float:
        return self.lost / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def holding_the_interpreter(seconds: float) -> Iterator[None]:
    """Keep the other threads of this process from taking the interpreter lock for about ``seconds``.

    A thread that wants the lock gets it after the switch interval (5 ms by default): the harness's progress bar,
    redrawn once a second by a thread of its own, then showed in a 50 ms spin loop as a stall of 4-5 ms, which is
    this process's own work, not the CPU taken away by the host or by another process.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(max(before, 2 * seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def stall_probe(seconds: float = 0.2, gap: float = STALL_GAP) -> Stalls:
    """Spin for ``seconds`` on the calling thread's CPU and count the gaps over ``gap`` (the CPU was taken away by
    the host or by another process; this process's other threads wait meanwhile: :func:`holding_the_interpreter`)."""
    clock = time.perf_counter
    with holding_the_interpreter(seconds):
        start = last = clock()
        end = start + seconds
        count, lost, worst = 0, 0.0, 0.0
        while (now := clock()) < end:
            delta = now - last
            if delta > gap:
                count += 1
                lost += delta
                worst = max(worst, delta)
            last = now
    return Stalls(now - start, count, lost, worst)


def wakeup_latency(count: int = 40, interval: float = 0.001) -> Sequence[float]:
    """How late each of ``count`` sleeps of ``interval`` seconds ended (seconds, in the order measured)."""
    late = []
    for _ in range(count):
        start = time.perf_counter()
        time.sleep(interval)
        late.append(max(0.0, time.perf_counter() - start - interval))
    return late


@dataclass(frozen=True, slots=True)
class Noise:
    """The noise around one trial: steal during it, the stall probe and wake-up latency just before it."""

    steal_share: float
    stalls: Stalls
    wakeup_p50: float
    wakeup_max: float

    def reasons(self) -> list[str]:
        """Why the trial counts as disturbed by the machine (empty: it does not)."""
        out = []
        if self.steal_share > MAX_STEAL_SHARE:
            out.append(f"CPU steal {self.steal_share:.1%} of the trial (over {MAX_STEAL_SHARE:.0%})")
        if self.stalls.lost_share > MAX_STALL_SHARE and self.stalls.lost > MIN_LOST:
            out.append(
                f"the generator's CPU lost {self.stalls.lost_share:.1%} of a {self.stalls.seconds * 1e3:.0f} ms probe "
                f"to stalls (over {MAX_STALL_SHARE:.1%})"
            )
        if self.stalls.worst > MAX_STALL:
            out.append(f"a {self.stalls.worst * 1e3:.1f} ms stall of the generator's CPU (over {MAX_STALL * 1e3:g} ms)")
        return out

    def columns(self) -> dict[str, float | int]:
        """The noise as columns of a trial's row."""
        return {
            "noise_steal_share": self.steal_share,
            "noise_stalls": self.stalls.count,
            "noise_stall_lost_share": self.stalls.lost_share,
            "noise_worst_stall": self.stalls.worst,
            "noise_wakeup_p50": self.wakeup_p50,
            "noise_wakeup_max": self.wakeup_max,
        }


class NoiseProbe(Protocol):
    """Measures the noise around one trial: ``before()`` it starts, ``after()`` it ends."""

    def before(self) -> None: ...

    def after(self) -> Noise: ...


class NoiseMeter:
    """Measure the noise around a trial: ``before()`` probes stalls and wake-up, ``after()`` adds the steal."""

    def __init__(self, cpus: Collection[int] | None = None, probe_seconds: float = 0.2) -> None:
        self.cpus = cpus
        self.probe_seconds = probe_seconds
        self._times: CpuTimes | None = None
        self._stalls = Stalls(0.0, 0, 0.0, 0.0)
        self._wakeup: Sequence[float] = ()

    def before(self) -> None:
        self._wakeup = sorted(wakeup_latency(count=10))  # a median and a maximum: 10 ms, not 20, of every trial
        self._stalls = stall_probe(self.probe_seconds)
        self._times = cpu_times()

    def after(self) -> Noise:
        if self._times is None:
            raise RuntimeError("NoiseMeter.after() without before()")
        share = steal_share(self._times, cpu_times(), self.cpus)
        wake = self._wakeup
        return Noise(share, self._stalls, wake[len(wake) // 2] if wake else 0.0, wake[-1] if wake else 0.0)

"""The machine's noise around a trial: steal from /proc/stat, stalls of a spin loop, wake-up latency."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.system.noise import MAX_STALL, Noise, NoiseMeter, Stalls, cpu_times, stall_probe, steal_share

STAT_BEFORE = """cpu  100 0 100 800 0 0 0 0 0 0
cpu0 50 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 400 0 0 0 0 0 0
intr 1 2 3
"""
STAT_AFTER = """cpu  200 0 200 1500 0 0 0 100 0 0
cpu0 100 0 100 780 0 0 0 20 0 0
cpu1 100 0 100 720 0 0 0 80 0 0
intr 1 2 3
"""


def test_steal_is_the_share_of_the_chosen_cpus_time(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    before.write_text(STAT_BEFORE)
    after.write_text(STAT_AFTER)
    first, second = cpu_times(before), cpu_times(after)
    assert first.total == {0: 500, 1: 500}
    assert steal_share(first, second, {0}) == pytest.approx(20 / 500)
    assert steal_share(first, second, {1}) == pytest.approx(80 / 500)
    assert steal_share(first, second) == pytest.approx(100 / 1000)
    assert steal_share(first, first) == 0.0


def test_a_missing_proc_stat_reads_as_no_steal(tmp_path: Path) -> None:
    nothing = cpu_times(tmp_path / "absent")
    assert steal_share(nothing, nothing) == 0.0


def test_the_stall_probe_sees_another_process_on_its_cpu() -> None:
    # A process spinning on the same CPU takes it away in the scheduler's time slices, as the host would.
    cpu = min(os.sched_getaffinity(0))
    mine = os.sched_getaffinity(0)
    spin = "\n".join(
        (
            "import os, time",
            f"os.sched_setaffinity(0, {{{cpu}}})",
            "end = time.time() + 1.5",
            "while time.time() < end: pass",
        )
    )
    hog = subprocess.Popen([sys.executable, "-c", spin])
    try:
        os.sched_setaffinity(0, {cpu})
        time.sleep(0.2)  # the other process has started spinning
        stalls = stall_probe(0.3)
    finally:
        os.sched_setaffinity(0, mine)
        hog.kill()
        hog.wait()
    assert stalls.count >= 2
    assert stalls.worst >= 0.001
    assert 0 < stalls.lost_share <= 1


def test_the_stall_probe_leaves_out_this_process_s_own_threads() -> None:
    # A thread of the harness (the progress bar's, say) that wants the interpreter every 30 ms and then holds it for
    # 20 ms: it is this process's work, not the CPU taken away, and waits until the probe is over.
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            end = time.perf_counter() + 0.02
            while time.perf_counter() < end:
                pass
            time.sleep(0.03)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        time.sleep(0.01)
        stalls = stall_probe(0.2)
    finally:
        stop.set()
        thread.join()
    # Handing the interpreter over every 30 ms would lose the switch interval (5 ms) each time: 30 ms of the 200.
    assert stalls.lost < 0.01


def test_a_short_probe_is_not_disturbed_by_one_routine_stall() -> None:
    one = Noise(0.0, Stalls(0.05, 1, 0.0003, 0.0003), 50e-6, 80e-6)  # 0.6% of 50 ms, but 0.3 ms
    assert one.reasons() == []
    several = Noise(0.0, Stalls(0.05, 4, 0.0015, 0.0005), 50e-6, 80e-6)
    assert any("lost 3.0% of a 50 ms probe" in r for r in several.reasons())


def test_a_disturbed_trial_says_why() -> None:
    quiet = Noise(0.0, Stalls(0.2, 0, 0.0, 0.0), 50e-6, 80e-6)
    assert quiet.reasons() == []
    stolen = Noise(0.05, Stalls(0.2, 3, 0.004, 0.003), 50e-6, 80e-6)
    reasons = stolen.reasons()
    assert any("steal 5.0%" in r for r in reasons)
    assert any("lost 2.0%" in r for r in reasons)
    assert any(f"over {MAX_STALL * 1e3:g} ms" in r for r in reasons)
    assert set(stolen.columns()) >= {"noise_steal_share", "noise_stalls", "noise_worst_stall", "noise_wakeup_p50"}


def test_the_meter_measures_around_a_trial() -> None:
    meter = NoiseMeter(probe_seconds=0.05)
    with pytest.raises(RuntimeError):
        meter.after()
    meter.before()
    noise = meter.after()
    assert noise.stalls.seconds >= 0.05
    assert 0 <= noise.wakeup_p50 <= noise.wakeup_max
    assert 0 <= noise.steal_share <= 1

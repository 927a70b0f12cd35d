"""The machine's noise around a trial: steal from /proc/stat, stalls of a spin loop, wake-up latency."""

from __future__ import annotations

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


def test_the_stall_probe_sees_a_thread_that_holds_the_cpu() -> None:
    # A second thread that holds the GIL for 30 ms at a time takes this thread's "CPU" away, as the host would.
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            end = time.perf_counter() + 0.03
            while time.perf_counter() < end:
                pass
            time.sleep(0.001)

    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.03)
    thread = threading.Thread(target=hog)
    thread.start()
    try:
        stalls = stall_probe(0.3)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
    assert stalls.count >= 2
    assert stalls.worst >= 0.01
    assert 0 < stalls.lost_share <= 1


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

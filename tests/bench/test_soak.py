"""The soak experiment: the rate it chooses, the sampler, and a short real soak of the microservices."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bench.experiments import soak
from bench.experiments.soak import ProcessSampler, SoakParams, growth
from tests.bench.contexts import small_context

MICROSERVICES = {"gateway", "users", "inventory", "payments", "notifications", "orders"}
SHORT = SoakParams(duration=3.0, warmup=1.0, sample_interval=0.5, rate=80.0)


def test_rate_is_given_or_half_the_sustainable_or_the_fallback() -> None:
    assert SoakParams(rate=123.0).rate_for(4000.0) == 123.0
    assert SoakParams().rate_for(4000.0) == 2000.0
    assert SoakParams(rate_fraction=0.25).rate_for(4000.0) == 1000.0
    assert SoakParams(fallback_rate=150.0).rate_for(None) == 150.0
    assert SoakParams(fallback_rate=150.0).rate_for(0.0) == 150.0


def test_growth_is_a_fraction_of_the_start() -> None:
    assert growth(100.0, 110.0) == pytest.approx(0.10)
    assert growth(100.0, 90.0) == pytest.approx(-0.10)
    assert math.isnan(growth(0.0, 5.0))


def test_sampler_samples_a_process_on_a_grid_until_stopped() -> None:
    sampler = ProcessSampler({"me": os.getpid()}, interval=0.05)
    sampler.start()
    time.sleep(0.3)
    samples = sampler.stop()

    assert len(samples) >= 4
    times = [s.t_seconds for s in samples]
    assert times == sorted(times)
    assert times[0] == pytest.approx(0.0, abs=0.01)
    assert all(s.process == "me" and s.rss_bytes > 0 and s.open_fds > 0 for s in samples)
    assert samples[-1].cpu_seconds >= samples[0].cpu_seconds


def test_sampler_skips_a_process_that_has_exited() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not reaped yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sampler = ProcessSampler({"me": os.getpid(), "exited": child.pid}, interval=1.0)
        sampler.start()
        samples = sampler.stop()
    finally:
        child.wait()

    assert {s.process for s in samples} == {"me"}


@pytest.mark.sockets
def test_a_short_soak_records_every_process_over_time(tmp_path: Path) -> None:
    calls: list[str] = []

    tables = soak.EXPERIMENT.run(
        small_context(tmp_path, ["microservices"]), SHORT, lambda description, _seconds: calls.append(description)
    )

    samples, summary, load = tables["soak"], tables["soak_summary"], tables["soak_load"]
    assert set(samples.columns) >= {"topology", "process", "t_seconds", "rss_bytes", "open_fds", "cpu_seconds"}
    assert set(samples["process"]) == MICROSERVICES
    assert (samples["topology"] == "microservices").all()
    for process, group in samples.groupby("process"):
        assert group["t_seconds"].nunique() >= 6, process  # 4 s at one sample per 0.5 s
        assert group["t_seconds"].max() <= SHORT.warmup + SHORT.duration
        assert group["t_seconds"].is_monotonic_increasing, process
        assert group["cpu_seconds"].is_monotonic_increasing, process
    assert (samples["open_fds"] > 0).all()
    assert (samples["rss_bytes"] > 10 * 2**20).all()

    assert set(summary["process"]) == MICROSERVICES
    assert (summary["t_start"] >= SHORT.warmup).all()
    assert (summary["t_end"] > summary["t_start"]).all()
    for column in ("rss_growth", "fds_growth"):
        assert np.isfinite(summary[column]).all(), column
    assert (summary["rss_growth"] == (summary["rss_end"] - summary["rss_start"]) / summary["rss_start"]).all()
    assert (summary["requests"] >= 0.8 * SHORT.duration * 80).all()
    assert (summary["errors"] == 0).all()
    assert (summary["target_rate"] == 80.0).all()
    assert (summary.loc[summary["process"] == "gateway", "cpu_seconds"] > 0).all()

    assert load["requests"].sum() >= 0.8 * (SHORT.warmup + SHORT.duration) * 80
    assert (load["errors"] == 0).all()
    assert any("soak" in c for c in calls)

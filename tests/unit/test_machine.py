"""The machine's noise over a run, summarized from the noise columns of its trials."""

from __future__ import annotations

import math

import pandas as pd

from bench.common.machine import machine_noise
from bench.report.sections.method import machine_note, machine_pairs


def steps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "phase": ["low", "low", "knee", "traced"],
            "attempts": [1, 3, 2, math.nan],
            "disturbed": [False, True, False, None],
            "noise_steal_share": [0.0, 0.03, 0.01, math.nan],
            "noise_stall_lost_share": [0.0, 0.02, 0.001, math.nan],
            "noise_worst_stall": [0.0002, 0.004, 0.001, math.nan],
            "noise_wakeup_p50": [70e-6, 90e-6, 80e-6, math.nan],  # the traced run is not a trial: no noise
        }
    )


def test_the_summary_counts_the_trials_run_again_and_those_kept_disturbed() -> None:
    noise = machine_noise(steps())
    assert noise is not None
    assert (noise.trials, noise.repeated, noise.disturbed) == (3, 3, 1)
    assert noise.steal_median == 0.01
    assert noise.steal_max == 0.03
    assert noise.worst_stall == 0.004
    assert (noise.wakeup_median, noise.wakeup_low, noise.wakeup_high) == (80e-6, 70e-6, 90e-6)
    assert noise.line() == (
        "The machine: 3 of 3 trials run again, 1 kept disturbed; CPU steal 1.0% (max 3.0%); idle wake-up 80 us (70–90)"
    )
    assert noise.as_meta()["repeated"] == 3


def test_results_without_noise_columns_have_no_summary_and_the_report_shows_none() -> None:
    older = steps().drop(columns=["noise_wakeup_p50"])
    assert machine_noise(older) is None
    assert machine_noise(steps().iloc[3:]) is None  # no trial carries it
    assert machine_pairs(None) == ()
    assert machine_note(None) == ""
    assert "within 10%" in machine_note(machine_noise(steps()))
    shown = dict(machine_pairs(machine_noise(steps())))
    assert shown["idle wake-up latency (a 1 ms sleep's lateness)"] == "median 80 µs over the trials (70–90)"

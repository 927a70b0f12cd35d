"""How noisy the machine was over a run, from the noise columns that each trial's row of ``steps`` carries (written
by the network experiment's trials: :meth:`bench.system.noise.Noise.columns`).

The idle wake-up latency (how late a 1 ms sleep ends, measured before each trial) is the figure to compare runs
by: on the 2-core development VM, over fifteen runs of one evening, its run median was 71-72 us in the two runs
that read the monolith's knee at about 5,400 req/s and 83-94 us in those that read 3,000-4,800, while CPU steal
stayed at 0 and a Python loop ran at the same speed (``docs/measurements.md``). Two runs whose medians differ by
more than a tenth were made on what is, for the shop's many small requests, a different machine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

#: Runs whose wake-up medians differ by more than this share were made in different states of the machine.
COMPARABLE_WAKEUP: float = 0.10


@dataclass(frozen=True)
class MachineNoise:
    """The noise of a run's trials: how many were kept, run again and kept although disturbed; CPU steal (shares
    of CPU time), the stall probe's lost share and worst stall (seconds), and the idle wake-up latency's median per
    trial (seconds): the median over trials with its range."""

    trials: int
    repeated: int
    disturbed: int
    steal_median: float
    steal_max: float
    stall_lost_median: float
    worst_stall: float
    wakeup_median: float
    wakeup_low: float
    wakeup_high: float

    def as_meta(self) -> dict[str, Any]:
        """The summary as ``meta.json`` records it (NaN as None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def line(self) -> str:
        """One line for the terminal: "The machine: 3 of 51 trials run again, none kept disturbed; CPU steal 0.0%
        (max 0.4%); idle wake-up 72 us (68–90)"."""
        kept = f"{self.disturbed} kept disturbed" if self.disturbed else "none kept disturbed"
        return (
            f"The machine: {self.repeated} of {self.trials} trials run again, {kept}; CPU steal "
            f"{self.steal_median:.1%} (max {self.steal_max:.1%}); idle wake-up {self.wakeup_median * 1e6:.0f} us "
            f"({self.wakeup_low * 1e6:.0f}–{self.wakeup_high * 1e6:.0f})"
        )


def machine_noise(steps: pd.DataFrame) -> MachineNoise | None:
    """The noise over the rows of ``steps`` that carry it (trials measured in rounds or probes), None without any."""
    if "noise_wakeup_p50" not in steps:
        return None
    rows = steps[steps["noise_wakeup_p50"].notna()]
    if rows.empty:
        return None
    attempts = rows["attempts"].fillna(1) if "attempts" in rows else pd.Series(1, index=rows.index)
    disturbed = rows["disturbed"].fillna(False).astype(bool) if "disturbed" in rows else pd.Series(False)
    wakeup = rows["noise_wakeup_p50"].astype(float)
    steal = rows["noise_steal_share"].astype(float)
    return MachineNoise(
        trials=len(rows),
        repeated=int((attempts - 1).clip(lower=0).sum()),
        disturbed=int(disturbed.sum()),
        steal_median=float(steal.median()),
        steal_max=float(steal.max()),
        stall_lost_median=float(rows["noise_stall_lost_share"].astype(float).median()),
        worst_stall=float(rows["noise_worst_stall"].astype(float).max()),
        wakeup_median=float(wakeup.median()),
        wakeup_low=float(wakeup.min()),
        wakeup_high=float(wakeup.max()),
    )

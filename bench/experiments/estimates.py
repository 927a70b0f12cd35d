"""The network experiment's headline figures from its rounds: each a median over rounds with its interval, each ratio
to the monolith paired per round (:mod:`bench.common.intervals`); the sustainable throughput fitted to every probe
near the knee, with a bootstrap interval (:mod:`bench.experiments.knee`).

A leaf of the experiment: it reads the tables the rounds wrote (``steps``, ``ops``, ``knee``) and writes ``estimates``.
Its ``method`` column says how each figure was estimated: "median" (over rounds) or "fit" (over probes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from bench.common import stats
from bench.common.intervals import NOTHING, over_rounds, smallest_resolving_sample
from bench.common.names import KNEE, PER_OPERATION, STEPS
from bench.experiments import knee as fit

#: The headline figures of the experiment: (name, unit, where they come from).
FIGURES: tuple[tuple[str, str], ...] = (
    ("checkout_p50_ms", "ms"),
    ("p50_ms", "ms"),
    ("p99_ms", "ms"),
    ("cpu_per_request_us", "us"),
    ("sustainable_rps", "req/s"),
)


def per_round(tables: Mapping[str, pd.DataFrame], figure: str) -> pd.DataFrame:
    """``figure`` per topology and round (columns ``topology``, ``round``, ``value``), from the trials that can carry
    it: a latency from the low-load trials whose generator's own lag did not void it, p99 only where a trial's
    sample resolves it; CPU per request from every trial."""
    if figure == "sustainable_rps":
        knee = tables.get(KNEE)
        if knee is None or knee.empty:
            return pd.DataFrame(columns=["topology", "round", "value"])
        return knee.rename(columns={"sustainable_rps": "value"})[["topology", "round", "value"]]
    steps = tables[STEPS]
    low = steps[steps["phase"] == "low"]
    voided = low.get("voided_percentiles", pd.Series("", index=low.index)).fillna("").astype(str).str.split(",")
    if figure == "cpu_per_request_us":  # CPU time is the processes' own: the generator's lag does not void it
        return pd.DataFrame({"topology": low["topology"], "round": low["step"], "value": low["cpu_per_request_us"]})
    if figure == "checkout_p50_ms":  # judged by the lag of the checkouts' own requests
        ops = tables[PER_OPERATION]
        rows = ops[(ops["phase"] == "low") & (ops["op"].astype(str) == "checkout")]
        if "lag_p50" in rows:
            rows = rows[~stats.lag_voids(rows["lag_p50"], rows["p50"])]
        else:  # an older run: its invalid trials
            rows = rows.merge(low.loc[low["valid"].astype(bool), ["topology", "step"]], on=["topology", "step"])
        return pd.DataFrame({"topology": rows["topology"], "round": rows["step"], "value": rows["p50"] * 1e3})
    name = "p99" if figure == "p99_ms" else "p50"
    # A latency figure of a trial whose generator's own lag voided it (or, in an older run, an invalid trial).
    usable = ~voided.map(lambda names: name in names) if "voided_percentiles" in low else low["valid"].astype(bool)
    low = low[usable]
    values = low[name] * 1e3
    if figure == "p99_ms":
        values = values.where(low["requests"] >= smallest_resolving_sample(99.0))
    return pd.DataFrame({"topology": low["topology"], "round": low["step"], "value": values})


def knee_probes(
    tables: Mapping[str, pd.DataFrame], topologies: Sequence[str], slo_p99: float, error_budget: float
) -> dict[str, fit.Probes]:
    """Each topology's probes near its knee (:func:`bench.experiments.knee.probes_near`), around the median of its
    knee rounds' crossings; none where the run has no probes in ``steps`` or no knee rounds."""
    steps, rounds = tables.get(STEPS), tables.get(KNEE)
    if steps is None or rounds is None or rounds.empty or "phase" not in steps:
        return {}
    out = {}
    for topology in topologies:
        center = rounds.loc[rounds["topology"] == topology, "sustainable_rps"].astype(float).median()
        probes = fit.probes_near(steps, topology, float(center), slo_p99, error_budget)
        if probes.n:
            out[topology] = probes
    return out


def estimates(
    tables: Mapping[str, pd.DataFrame],
    topologies: Sequence[str],
    slo: tuple[float, float] | None = None,
    seed: int = 1,
) -> pd.DataFrame:
    """Every headline figure per topology as a median over rounds with its interval, and its ratio to the monolith
    paired per round (:mod:`bench.common.intervals`).

    With ``slo`` (p99 in seconds, error budget as a share), the sustainable throughput is fitted to the probes near
    each topology's knee, its interval and its ratio's from a bootstrap over them seeded with ``seed``
    (:mod:`bench.experiments.knee`); without it, or for a topology without probes, it is the median of the knee's
    rounds like the other figures."""
    probes = knee_probes(tables, topologies, *slo) if slo is not None else {}
    rows = []
    for figure, unit in FIGURES:
        values = per_round(tables, figure)
        series = {
            str(topology): group.set_index("round")["value"].astype(float)
            for topology, group in values.groupby("topology", sort=False)
        }
        baseline = series.get("monolith")
        for topology in topologies:
            method = "median"
            if figure == "sustainable_rps" and topology in probes:
                method = "fit"
                value = fit.estimate(probes[topology], seed)
                paired = topology != "monolith" and "monolith" in probes
                ratio = fit.ratio(probes[topology], probes["monolith"], seed) if paired else NOTHING
            else:
                mine = series.get(topology, pd.Series(dtype=float))
                value, ratio = over_rounds(mine, baseline if topology != "monolith" else None)
            rows.append(
                {
                    "figure": figure,
                    "unit": unit,
                    "topology": topology,
                    "method": method,
                    **{k: getattr(value, k) for k in ("value", "low", "high", "n", "coverage")},
                    "wide": value.wide,
                    **{f"ratio_{k}": getattr(ratio, k) for k in ("value", "low", "high", "n", "coverage")},
                    "ratio_wide": ratio.wide if ratio.n else False,
                }
            )
    return pd.DataFrame(rows)

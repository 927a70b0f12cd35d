"""The network experiment's figures over its rounds, as every part of the report shows them.

The experiment measures the topologies in interleaved rounds: a low-load trial of each topology per round (rows of
``steps`` with phase "low", one per round, and their ``ops`` and ``resources`` rows) and the knee re-checked in rounds
(``knee``, one row per topology and round). It writes the median over rounds of its headline figures, with their
intervals and their ratios to the monolith paired per round (``estimates``).

Every per-topology figure the report shows comes from here, so that the verdict, the tables and the charts show one
number per figure and say what it is (:attr:`Over.basis`): the ``estimates`` table's numbers where it has the figure,
else the same median and interval (:mod:`bench.common.intervals`) computed here from the rounds with the experiment's
rules: a latency left out of a round where the generator's own lag voided it (it was over
:data:`bench.common.stats.MATERIAL_SHARE` of the latency), a p99 only from a round whose sample resolves it, CPU per
request from every round. Memory is the largest peak over the low-load rounds (:func:`largest`).

A per-round frame has the columns ``topology``, ``round``, ``value`` (NaN where that round cannot carry the figure),
``valid`` (whether that run is valid) and ``anchor`` (the id of the run's row in the validity table). An older
results directory has no rounds (:func:`measured_in_rounds` is False): the sections then read its one low-load run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from bench.common.intervals import over_rounds, smallest_resolving_sample
from bench.common.names import ESTIMATES, KNEE, PERCENTILES
from bench.common.stats import lag_voids
from bench.report.context import Context, step_anchor

BASELINE: Final = "monolith"
COLUMNS: Final = ("topology", "round", "value", "valid", "anchor")
#: The rank of each latency percentile by name (p50 -> 50.0).
RANKS: Final = dict(PERCENTILES)
#: The factor from a unit of the ``estimates`` table to the unit of the report's cells (latency cells hold seconds).
TO_CELL_UNIT: Final = {"ms": 1e-3}


def measured_in_rounds(ctx: Context) -> bool:
    """Whether the run measured the network experiment in rounds (its ``steps`` have a ``round`` column)."""
    return "round" in ctx.table("steps")


def low_steps(ctx: Context) -> pd.DataFrame:
    """The low-load trials (rows of ``steps``), with ``round`` (the trial's round; its step in an older run) and
    ``anchor``."""
    steps = ctx.table("steps")
    if steps.empty:
        return pd.DataFrame(columns=[*COLUMNS, "step"])
    low = steps[steps["phase"] == "low"].copy()
    low["round"] = (low["round"].fillna(low["step"]) if "round" in low else low["step"]).astype(int)
    low["valid"] = low["valid"].astype(bool)
    low["anchor"] = [step_anchor(str(t), "low", int(s)) for t, s in zip(low["topology"], low["step"], strict=True)]
    return low


def low_rounds(ctx: Context) -> int:
    """The number of low-load rounds (the most any topology ran; 0 without low-load trials)."""
    low = low_steps(ctx)
    return int(low.groupby("topology")["round"].nunique().max()) if len(low) else 0


def _frame(rows: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "topology": rows["topology"].astype(str),
            "round": rows["round"].astype(int),
            "value": values.astype(float),
            "valid": rows["valid"].astype(bool),
            "anchor": rows["anchor"].astype(str),
        }
    )[list(COLUMNS)]


def beyond(count: pd.Series, name: str) -> pd.Series:
    """Per sample of ``count`` latencies, whether the percentile ``name`` lies beyond what it resolves (fewer than
    1/(1-p) values): it is then the sample's maximum, under another name."""
    if name not in RANKS:
        return pd.Series(False, index=count.index)
    return count.astype(float) * (1.0 - RANKS[name] / 100.0) < 1.0


def voided(rows: pd.DataFrame, name: str) -> pd.Series:
    """Per trial (rows of ``steps``), whether the generator's own lag voided the latency ``name`` (p50...), as the
    trial recorded it (a percentile beyond what the trial resolves is its maximum, and voided with it); in an older
    run, which recorded no such thing, whether the trial is invalid."""
    if "voided_percentiles" not in rows:
        return ~rows["valid"].astype(bool)
    names = rows["voided_percentiles"].fillna("").astype(str).str.split(",")
    mine = names.map(lambda voids: name in voids).astype(bool)
    as_max = names.map(lambda voids: "max" in voids).astype(bool) & beyond(rows["requests"], name)
    return mine | as_max


def op_voided(rows: pd.DataFrame, name: str) -> pd.Series:
    """Per row of ``ops``, whether the lag of the operation's own requests voided its latency ``name``
    (:func:`bench.common.stats.lag_voids`), at the same percentile where the run recorded that lag, else at p99 for
    the percentiles from p99 up and the maximum (never for the others); in an older run, whether the trial is
    invalid."""
    if "lag_p50" not in rows:
        return ~rows["valid"].astype(bool)
    lag = f"lag_{name}"
    if lag not in rows:
        lag = "lag_p99" if name == "max" or RANKS.get(name, 0.0) >= 99.0 else ""
    if not lag or lag not in rows:
        return pd.Series(False, index=rows.index)
    return lag_voids(rows[lag], rows[name])


def low_latency(ctx: Context, name: str, op: str | None = None, *, resolve: bool = False) -> pd.DataFrame:
    """The latency ``name`` (p50, p99..., max; seconds) of every low-load round, of all operations (``steps``) or of
    ``op`` (``ops``): NaN in a round where the generator's own lag voided it, and, when ``resolve``, where the
    round's sample is too small to resolve that percentile (:func:`bench.common.intervals.smallest_resolving_sample`).
    """
    low = low_steps(ctx)
    if low.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    if op is None:
        rows, count = low, low["requests"]
        void = voided(low, name)
    else:
        rows = op_rows(ctx, op)
        if rows.empty:
            return pd.DataFrame(columns=list(COLUMNS))
        count = rows["count"]
        void = op_voided(rows, name)
    values = rows[name].astype(float).where(~void.astype(bool))
    if resolve and name in RANKS:
        values = values.where(count >= smallest_resolving_sample(RANKS[name]))
    return _frame(rows, values)


def op_rows(ctx: Context, op: str) -> pd.DataFrame:
    """The rows of ``ops`` of ``op`` in the low-load trials, with their trial's ``round``, ``valid`` and ``anchor``."""
    low, ops = low_steps(ctx), ctx.table("ops")
    if low.empty or ops.empty:
        return pd.DataFrame(columns=[*COLUMNS, "step", "count"])
    ops = ops[(ops["phase"] == "low") & (ops["op"].astype(str) == op)]
    keys = ["topology", "step", "round", "valid", "anchor"]
    return ops.drop(columns=[k for k in ("round", "valid", "anchor") if k in ops]).merge(
        low[keys], on=["topology", "step"]
    )


def op_column(ctx: Context, op: str, column: str) -> pd.DataFrame:
    """``column`` of ``ops`` (``count``...) of ``op`` in every low-load round, as a per-round frame."""
    rows = op_rows(ctx, op)
    return _frame(rows, rows[column]) if len(rows) else pd.DataFrame(columns=list(COLUMNS))


def low_column(ctx: Context, column: str) -> pd.DataFrame:
    """``column`` of ``steps`` (CPU per request, peak RSS...) of every low-load round: the processes' own figures,
    which the generator's lag does not void."""
    low = low_steps(ctx)
    if low.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    return _frame(low, low[column])


def process_rounds(ctx: Context, column: str) -> pd.DataFrame:
    """``column`` of ``resources`` (CPU per request, CPU seconds, peak RSS) of every process in every low-load round:
    a per-round frame with a ``process`` column."""
    low, resources = low_steps(ctx), ctx.table("resources")
    if low.empty or resources.empty:
        return pd.DataFrame(columns=[*COLUMNS, "process"])
    rows = resources[resources["phase"] == "low"].merge(
        low[["topology", "step", "round", "valid", "anchor"]], on=["topology", "step"]
    )
    return _frame(rows, rows[column]).assign(process=rows["process"].astype(str).to_numpy())


def knee_rounds(ctx: Context) -> pd.DataFrame:
    """The sustainable throughput (requests per second) each round of the knee estimated, from ``knee``; ``valid``:
    both of the round's probes are valid runs (``anchor``: the first invalid one's row)."""
    knee = ctx.table(KNEE)
    if knee.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    probes = [knee_probes(ctx, row) for _, row in knee.iterrows()]
    invalid = [[p.anchor for p in pair if p is not None and not p.valid] for pair in probes]
    return pd.DataFrame(
        {
            "topology": knee["topology"].astype(str),
            "round": knee["round"].astype(int),
            "value": knee["sustainable_rps"].astype(float),
            "valid": [not i for i in invalid],
            "anchor": [i[0] if i else "" for i in invalid],
        }
    )[list(COLUMNS)]


@dataclass(frozen=True)
class Probe:
    """One probe of a round of the knee, as its row of ``steps`` has it: rate (requests per second), p99 (seconds),
    error rate (a share), whether the run is valid, and the id of its row in the validity table ("" if not found)."""

    rate: float
    p99: float
    error_rate: float = math.nan
    valid: bool = True
    anchor: str = ""


def knee_probes(ctx: Context, row: pd.Series) -> tuple[Probe | None, Probe | None]:
    """The lower and upper probe of one row of ``knee`` (None where the round had none), with their runs' validity
    from ``steps`` (round 0 is the search's own probes, phase "sweep"; a re-check round's are phase "knee")."""
    steps = ctx.table("steps")
    out: list[Probe | None] = []
    for end in ("low", "high"):
        rate, p99 = float(row[f"{end}_rate"]), float(row[f"{end}_p99"])
        if not math.isfinite(rate):
            out.append(None)
            continue
        found = steps.iloc[0:0]
        if not steps.empty and "round" in steps:
            found = steps[
                (steps["topology"] == row["topology"])
                & steps["phase"].isin(["sweep", "knee"])
                & (steps["round"] == row["round"])
                & (steps["target_rate"] == rate)
            ]
        if found.empty:
            out.append(Probe(rate, p99))
            continue
        run = found.iloc[-1]
        anchor = step_anchor(str(run["topology"]), str(run["phase"]), int(run["step"]))
        out.append(Probe(rate, p99, float(run["error_rate"]), bool(run["valid"]), anchor))
    return out[0], out[1]


@dataclass(frozen=True)
class Over:
    """One topology's figure over its rounds: ``value`` with its interval ``low``–``high`` (the figure's unit),
    from ``n`` of its ``rounds`` rounds (the others could not carry it), covering the true median with probability
    ``coverage``; ``ratio`` to the monolith paired per round with its interval (``ratio_n`` 0: none); ``wide``:
    the interval or the ratio's is wider than ±10% of its figure. ``largest``: the value is the largest over the
    rounds, not their median (no interval). ``invalid``: the ids of the invalid runs among those it comes from."""

    value: float
    low: float
    high: float
    n: int
    coverage: float
    rounds: int
    ratio: float = math.nan
    ratio_low: float = math.nan
    ratio_high: float = math.nan
    ratio_n: int = 0
    wide: bool = False
    largest: bool = False
    invalid: tuple[str, ...] = ()
    #: What the rounds are called in :attr:`basis` ("rounds", "low-load rounds").
    called: str = "rounds"
    #: The value is a fit over the ``n`` probes near the knee with a bootstrap interval, not a median over rounds.
    fitted: bool = False

    @property
    def basis(self) -> str:
        """What the figure is, in words: "median of 3 rounds, 75% interval", "1 of 3 rounds", "largest of 3
        low-load rounds", "fit over 12 probes near the knee, 95% bootstrap interval" ("" without a value)."""
        if self.n == 0:
            return ""
        if self.fitted:
            return f"fit over {self.n} probes near the knee, {self.coverage:.0%} bootstrap interval"
        of = f"{self.n} of {self.rounds}" if self.n < self.rounds else f"{self.n}"
        called = self.called if self.rounds > 1 else self.called.removesuffix("s")
        if self.n == 1:
            return f"{of} {called}"
        if self.largest:
            return f"largest of {of} {called}"
        return f"median of {of} {called}, {self.coverage:.0%} interval"

    def text(self, show: Callable[[float], str], unit: str = "") -> str:
        """``"1,002 µs (990–2,000)"``: the value shown by ``show``, then the interval when there is one."""
        said = show(self.value) + (f" {unit}" if unit else "")
        if self.n > 1 and not self.largest:
            said += f" ({show(self.low)}–{show(self.high)})"
        return said

    def interval(self, show: Callable[[float], str]) -> str:
        """``"(990–2,000)"``, or "" when there is no interval."""
        return f"({show(self.low)}–{show(self.high)})" if self.n > 1 and not self.largest else ""

    def ratio_text(self) -> str:
        """``"×2.80 (2.60–3.00)"``, or "" without a paired ratio."""
        if not self.ratio_n or not math.isfinite(self.ratio):
            return ""
        shown = f"×{self.ratio:.2f}" if self.ratio < 10 else f"×{self.ratio:.0f}"
        if self.ratio_n > 1:
            shown += f" ({self.ratio_low:.2f}–{self.ratio_high:.2f})"
        return shown


def _by_round(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index("round")["value"].astype(float)


def over(
    frame: pd.DataFrame,
    topologies: Sequence[str],
    estimated: pd.DataFrame | None = None,
    scale: float = 1.0,
) -> dict[str, Over]:
    """Each topology's figure over the rounds of ``frame`` (a per-round frame): the median with its interval and the
    ratio to the monolith paired per round (:mod:`bench.common.intervals`), or, where ``estimated`` (rows of the
    ``estimates`` table, one per topology) has the topology, those numbers times ``scale``. A topology with neither
    is left out."""
    out: dict[str, Over] = {}
    groups = {str(t): g for t, g in frame.groupby("topology", sort=False)}
    baseline = _by_round(groups[BASELINE]) if BASELINE in groups else None
    rows = {} if estimated is None else {str(r["topology"]): r for _, r in estimated.iterrows()}
    empty = pd.DataFrame(columns=list(COLUMNS))
    for topology in topologies:
        group = groups.get(topology)
        if group is None and topology not in rows:
            continue
        group = empty if group is None else group
        used = group[np.isfinite(group["value"].astype(float))]
        invalid = tuple(dict.fromkeys(used.loc[~used["valid"].astype(bool), "anchor"].astype(str)))
        rounds = int(group["round"].nunique())
        if topology in rows:
            row = rows[topology]
            out[topology] = Over(
                float(row["value"]) * scale,
                float(row["low"]) * scale,
                float(row["high"]) * scale,
                int(row["n"]),
                float(row["coverage"]),
                max(rounds, int(row["n"])),
                float(row["ratio_value"]),
                float(row["ratio_low"]),
                float(row["ratio_high"]),
                int(row["ratio_n"]),
                bool(row["wide"]) or bool(row["ratio_wide"]),
                invalid=invalid,
                fitted=str(row.get("method", "median")) == "fit",
            )
            continue
        value, ratio = over_rounds(_by_round(group), baseline if topology != BASELINE else None)
        wide = value.wide or (ratio.wide if ratio.n else False)
        out[topology] = Over(
            value.value,
            value.low,
            value.high,
            value.n,
            value.coverage,
            rounds,
            ratio.value,
            ratio.low,
            ratio.high,
            ratio.n,
            wide if value.n else False,
            invalid=invalid,
        )
    return out


def largest(frame: pd.DataFrame, topologies: Sequence[str], called: str = "rounds") -> dict[str, Over]:
    """Each topology's largest value over the rounds of ``frame`` (a per-round frame, its rounds ``called`` so in
    :attr:`Over.basis`); ``invalid``: the round it was taken in, when that run is invalid."""
    out: dict[str, Over] = {}
    for topology, group in frame.groupby("topology", sort=False):
        if str(topology) not in topologies:
            continue
        used = group[np.isfinite(group["value"].astype(float))]
        rounds = int(group["round"].nunique())
        if used.empty:
            out[str(topology)] = Over(math.nan, math.nan, math.nan, 0, math.nan, rounds, largest=True, called=called)
            continue
        top = used.iloc[int(np.argmax(used["value"].to_numpy(dtype=float)))]
        value = float(top["value"])
        invalid = () if bool(top["valid"]) else (str(top["anchor"]),)
        out[str(topology)] = Over(
            value, value, value, len(used), math.nan, rounds, largest=True, invalid=invalid, called=called
        )
    return out


def estimated(ctx: Context, figure: str) -> pd.DataFrame | None:
    """The rows of the ``estimates`` table for ``figure`` (None when the run did not estimate it)."""
    estimates = ctx.table(ESTIMATES)
    if estimates.empty:
        return None
    rows = estimates[estimates["figure"] == figure]
    return rows if len(rows) else None


def figure_over(ctx: Context, figure: str, frame: pd.DataFrame) -> dict[str, Over]:
    """``figure`` per topology over the rounds of ``frame``: the ``estimates`` table's numbers where the run
    estimated it (converted to the unit of ``frame``), else computed from ``frame`` by the same rules."""
    rows = estimated(ctx, figure)
    scale = TO_CELL_UNIT.get(str(rows["unit"].iloc[0]), 1.0) if rows is not None else 1.0
    return over(frame, ctx.topologies, rows, scale)


def per_process(frame: pd.DataFrame, reduce: str = "median", called: str = "rounds") -> dict[tuple[str, str], Over]:
    """Per (topology, process) of a per-round frame with a ``process`` column: the median over rounds with its
    interval (``reduce="median"``), or the largest (``reduce="largest"``)."""
    out: dict[tuple[str, str], Over] = {}
    for process, group in frame.groupby("process", sort=False):
        topologies = [str(t) for t in group["topology"].unique()]
        each = largest(group, topologies, called) if reduce == "largest" else over(group, topologies)
        for topology, value in each.items():
            out[(topology, str(process))] = value
    return out


def common_basis(bases: Iterable[str]) -> str:
    """The basis most figures share ("median of 3 rounds, 75% interval"), for a caption or a row's label; "" when
    none has one."""
    said = [basis for basis in bases if basis]
    return max(dict.fromkeys(said), key=said.count) if said else ""


def summarized(overs: Mapping[str, Over]) -> str:
    """The basis most of ``overs`` share."""
    return common_basis(o.basis for o in overs.values())

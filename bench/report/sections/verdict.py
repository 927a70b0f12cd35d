"""The verdict at the top of the page: each row of the classic monolith-vs-microservices comparison, filled with
what this run measured, and the ratio to the monolith.

The rows come from the section modules (each :class:`bench.report.view.Part` lists its metrics); this module orders
them by aspect, fills them and says "not measured in this run" with the command for a row whose tables the run did
not produce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bench.report.context import Context
from bench.report.format import ratio_text
from bench.report.rounds import common_basis
from bench.report.view import Cell, Link, Metric

#: The classic comparison's claim per aspect, in its order: what the measured rows test.
ASPECTS: Final[dict[str, str]] = {
    "Codebase": "one codebase vs one per service",
    "Deployment": "redeploy everything vs deploy each service on its own",
    "Scaling": "scale the whole app vs scale only the services that need it",
    "Failure impact": "the whole app goes down vs only the failed service",
    "Complexity": "one thing to run vs many moving parts",
    "Network overhead": "function calls vs calls over the network",
    "Data consistency": "one database, one transaction vs a database per service, sagas",
    "Debugging": "one process to look at vs a request spread over many",
    "Security isolation": "one trust boundary vs sensitive services isolated",
    "Stability over time": "(not in the classic table) memory and descriptors under long load",
}

BASELINE: Final = "monolith"


@dataclass(frozen=True)
class Figure:
    """A filled cell as shown: the cell, its ratio to the monolith ("baseline", "×1.45 vs monolith" or ""), and
    ``note``: what the figure is when that differs from the row's basis ("1 of 3 rounds")."""

    cell: Cell
    ratio: str = ""
    note: str = ""


@dataclass(frozen=True)
class Row:
    """One metric: ``figures`` per topology (None: this topology has no figure) when it was measured, else
    ``missing`` says why not (and ``command`` how to measure it). ``aspect_rows``: on the first row of an aspect,
    how many rows the aspect has (0 on the others). ``basis``: what most of its figures are ("median of 3 rounds,
    75% interval"; "" for single runs and counts); ``details``: a link to how the figures were reached."""

    aspect: str
    claim: str
    aspect_rows: int
    name: str
    figures: dict[str, Figure | None] | None
    missing: str = ""
    command: str = ""
    tables: tuple[str, ...] = ()
    basis: str = ""
    details: Link | None = None


@dataclass(frozen=True)
class Headline:
    """A figure of the glance list above the verdict: its name, its cells, and what most of them are (``basis``)."""

    name: str
    figures: tuple[tuple[str, Cell], ...]
    basis: str = ""


@dataclass(frozen=True)
class Verdict:
    """``wide``: some figure's interval is over ±10% of it (the page says what to do); ``rounds``: some figure is a
    median over rounds (the page says how to read one); ``fitted``: some figure is a fit over the probes near the
    knee (the page says what that is)."""

    topologies: tuple[str, ...]
    rows: tuple[Row, ...]
    headline: tuple[Headline, ...]
    wide: bool = False
    rounds: bool = False
    fitted: bool = False

    def row(self, name: str) -> Row:
        """The row whose metric name starts with ``name``."""
        for row in self.rows:
            if row.name.startswith(name):
                return row
        raise KeyError(name)


def ordered(metrics: Sequence[Metric]) -> list[Metric]:
    """By aspect (the classic order, then any other aspect in the order met), then rank, then the order given."""
    aspects = list(dict.fromkeys([*ASPECTS, *(m.aspect for m in metrics)]))
    return sorted(metrics, key=lambda m: (aspects.index(m.aspect), m.rank))


def ratio_of(cell: Cell, baseline: Cell | None, is_baseline: bool, ratio: bool) -> str:
    if not ratio or cell.value is None:
        return ""
    if is_baseline:
        return "baseline"
    if cell.ratio:
        return f"{cell.ratio} vs monolith"
    if (
        baseline is not None
        and baseline.value is not None
        and cell.value is not None
        and baseline.value > 0
        and math.isfinite(baseline.value)
        and math.isfinite(cell.value)
    ):
        return f"{ratio_text(cell.value / baseline.value)} vs monolith"
    return ""


def build(ctx: Context, metrics: Sequence[Metric]) -> Verdict:
    rows, headline = [], []
    metrics = ordered(metrics)
    counts = {a: sum(m.aspect == a for m in metrics) for a in dict.fromkeys(m.aspect for m in metrics)}
    shown: set[str] = set()
    for metric in metrics:
        first = metric.aspect not in shown
        shown.add(metric.aspect)
        measured = ctx.has(*metric.tables)
        cells = metric.fill(ctx) if metric.fill is not None and measured else None
        figures: dict[str, Figure | None] | None = None
        missing = basis = ""
        if cells is None:
            missing = "summarized" if measured else "not measured"
        else:
            base = cells.get(BASELINE)
            basis = common_basis(c.basis for c in cells.values())
            figures = {
                t: Figure(
                    cells[t],
                    ratio_of(cells[t], base, t == BASELINE, metric.ratio),
                    cells[t].basis if cells[t].basis != basis else "",
                )
                if t in cells
                else None
                for t in ctx.topologies
            }
            if metric.headline and cells:
                name = metric.name[0].upper() + metric.name[1:]
                glance = tuple((t, cells[t]) for t in ctx.topologies if t in cells)
                headline.append(Headline(name, glance, basis))
        rows.append(
            Row(
                metric.aspect,
                ASPECTS.get(metric.aspect, ""),
                counts[metric.aspect] if first else 0,
                metric.name,
                figures,
                missing,
                metric.command,
                metric.tables,
                basis,
                metric.details if figures is not None and metric.details and ctx.has(*metric.details.needs) else None,
            )
        )
    wide = any(f is not None and f.cell.wide for row in rows if row.figures for f in row.figures.values())
    rounds = any(row.basis.startswith("median") for row in rows)
    fitted = any(row.basis.startswith("fit over") for row in rows)
    return Verdict(tuple(ctx.topologies), tuple(rows), tuple(headline), wide, rounds, fitted)

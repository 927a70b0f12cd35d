"""The soak experiment (opt-in): growth of memory and descriptors under a long run, one row of the verdict."""

from __future__ import annotations

from bench.report.context import Context
from bench.report.sections.common import SOAK
from bench.report.view import Cell, Metric, Part


def soak_fill(ctx: Context) -> dict[str, Cell]:
    """The largest growth of RSS and of open descriptors over the soak, across the topology's processes."""
    frame = ctx.table("soak_summary")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        rows = frame[frame["topology"] == topology]
        if rows.empty:
            continue
        rss, fds = float(rows["rss_growth"].max()), float(rows["fds_growth"].max())
        minutes = float((rows["t_end"] - rows["t_start"]).max()) / 60
        said = f"RSS {rss:+.1%}, descriptors {fds:+.1%} (worst process, {minutes:.1f} min)"
        valid = bool(rows["valid"].astype(bool).all())
        out[topology] = Cell(rss, said + ("" if valid else " (invalid run)"))
    return out


PART = Part(
    metrics=(
        Metric(
            "Stability over time",
            "RSS and open descriptors growth under a long run (goal < 10%)",
            ("soak_summary",),
            SOAK,
            soak_fill,
            ratio=False,
        ),
    ),
)

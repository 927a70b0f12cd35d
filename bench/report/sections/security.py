"""The security experiment: the cost of the access checks, one row of the verdict (no section of its own)."""

from __future__ import annotations

from bench.report.context import Context
from bench.report.sections.common import SECURITY
from bench.report.view import Cell, Metric, Part


def security_fill(ctx: Context) -> dict[str, Cell]:
    """CPU per request with every access check on, against the same load with them off."""
    frame = ctx.table("security")
    out: dict[str, Cell] = {}
    for topology in ctx.topologies:
        rows = frame[frame["topology"] == topology]
        on, off = rows[rows["auth"].astype(bool)], rows[~rows["auth"].astype(bool)]
        if on.empty or off.empty:
            continue
        cpu_on, cpu_off = float(on["cpu_per_request_us"].iloc[0]), float(off["cpu_per_request_us"].iloc[0])
        p50_on, p50_off = float(on["p50"].iloc[0]), float(off["p50"].iloc[0])
        said = (
            f"+{cpu_on - cpu_off:,.0f} µs CPU/request ({cpu_on:,.0f} vs {cpu_off:,.0f}); "
            f"p50 {p50_on * 1e3:.2f} vs {p50_off * 1e3:.2f} ms"
        )
        valid = bool(on["valid"].iloc[0]) and bool(off["valid"].iloc[0])
        if topology == "monolith":
            # One process, one memory, one database: nothing stops one module from calling or reading another's.
            said += "; inside, only the edge can be checked: modules share one process and one database"
        out[topology] = Cell(cpu_on - cpu_off, said + ("" if valid else " (invalid run)"))
    return out


PART = Part(
    metrics=(
        Metric(
            "Security isolation",
            "cost of the access checks (API key at the edge, credentials inside): CPU per request, on vs off",
            ("security",),
            SECURITY,
            security_fill,
            ratio=False,
        ),
    ),
)

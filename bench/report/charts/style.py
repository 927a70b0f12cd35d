"""The charts' common ground: one palette per topology and per component, the matplotlib style, figures to
compact inline SVG, and how figures are rounded for display."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
from matplotlib.typing import RcKeyType

#: One colour per topology (Okabe-Ito, readable by colour-blind readers and in greyscale print with the markers).
TOPOLOGY_COLORS: Final[dict[str, str]] = {
    "monolith": "#0072B2",
    "colocated": "#E69F00",
    "microservices": "#D55E00",
}
TOPOLOGY_MARKERS: Final[dict[str, str]] = {"monolith": "o", "colocated": "s", "microservices": "^"}
#: One colour per component (service or gateway); a single-process topology's process takes its topology's colour.
COMPONENT_COLORS: Final[dict[str, str]] = {
    "gateway": "#56B4E9",
    "users": "#009E73",
    "inventory": "#F0E442",
    "payments": "#CC79A7",
    "notifications": "#999999",
    "orders": "#8C564B",
    **TOPOLOGY_COLORS,
}
_FALLBACK: Final = ("#666666", "#A6761D", "#1B9E77", "#7570B3", "#E7298A", "#66A61E")
INVALID_COLOR: Final = "#B00020"

#: Percentiles drawn on the spectrum, as (column name, percent).
SPECTRUM: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99))

_STYLE: Final[dict[RcKeyType, Any]] = {
    "svg.fonttype": "none",  # text stays text: small files, searchable, selectable
    "svg.hashsalt": "archbench",  # deterministic ids, so the same results render the same bytes
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e6ec",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def num(value: float | None) -> str:
    """A figure for display, in charts and tables alike: whole numbers as such (with thousands separators from 1,000),
    else 3 significant digits below 100 and no decimals above."""
    if value is None or not math.isfinite(value):
        return "—"
    size = abs(value)
    if size >= 100 or value == round(value):
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def signed(value: float) -> str:
    """:func:`num` with an explicit sign."""
    return ("+" if value >= 0 else "−") + num(abs(value))


def topology_color(topology: str) -> str:
    """The colour of ``topology`` in every chart and table."""
    return TOPOLOGY_COLORS.get(topology, _FALLBACK[sum(map(ord, topology)) % len(_FALLBACK)])


def component_color(component: str) -> str:
    """The colour of a component or process (``gateway``, ``orders``, ``monolith``...)."""
    return COMPONENT_COLORS.get(component, _FALLBACK[sum(map(ord, component)) % len(_FALLBACK)])


def topology_marker(topology: str) -> str:
    return TOPOLOGY_MARKERS.get(topology, "D")


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE):
        yield


def svg_of(fig: Figure, key: str, label: str) -> str:
    """``fig`` as an ``<svg>`` element to inline in HTML, its ids prefixed with ``key`` so that figures never clash."""
    buffer = io.StringIO()
    with _style():  # the SVG options are read when saving, not when drawing
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE: not allowed inside HTML
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = _compact(text)
    ids = set(re.findall(r'\sid="([^"]+)"', text))

    def prefixed(match: re.Match[str]) -> str:
        head, name = match.group(1), match.group(2)
        return f"{head}{key}-{name}" if name in ids else match.group(0)

    text = re.sub(r'(\sid="|url\(#|href="#)([^")]+)', prefixed, text)
    escaped = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace("<svg ", f'<svg role="img" aria-label="{escaped}" ', 1)


_GEOMETRY: Final = re.compile(r'(\s(?:d|x|y|transform)=")([^"]*)"')
_LONG_DECIMAL: Final = re.compile(r"(\d\.\d\d)\d+")


def _compact(svg: str) -> str:
    """Drop the indentation, the ids of groups (matplotlib names every group; nothing refers to them) and cut
    coordinates to 1/100 of a point (invisible). Only geometry attributes are cut, never text or styles."""
    svg = re.sub(r"\n[ \t]+", "\n", svg)
    svg = re.sub(r'<g id="[^"]*"', "<g", svg)
    return _GEOMETRY.sub(lambda m: m.group(1) + _LONG_DECIMAL.sub(r"\1", m.group(2)) + '"', svg)


def log_ticks(axis: Any) -> None:
    """Log axis labelled at 1, 2, 5 x 10^k in plain numbers (no 2x10^0 notation)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))

"""The report's view models: plain data that the templates turn into HTML.

A section builds a view (its own small dataclass of tables, figures and formatted figures) from the results; the
templates, with autoescape, write the prose around it. Nothing here is HTML: a table cell is a tuple of
:class:`Span`, each a piece of text with a ``kind`` that says how it looks (bold, code, a flag linking to an invalid
run's row...), so tests read the view model, never the markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from bench.report.context import Context

#: How a span looks: "" plain text, "topology" (a coloured dot, then the name), "b", "i", "code", "nw" (no wrap),
#: "nm" (not measured, in grey), "bad" (bold red), "desc" and "why" (a block of small text), "sub" (small grey text
#: in the line: an interval, a basis), "flag" (an invalid run, linking to its row when ``href`` is set), "alarm" (an
#: anomaly of the audit, loud on purpose).
KINDS: Final = ("", "topology", "b", "i", "code", "nw", "nm", "bad", "desc", "why", "sub", "flag", "alarm")


@dataclass(frozen=True)
class Span:
    text: str
    kind: str = ""
    href: str = ""
    color: str = ""

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind


Content = tuple[Span, ...]


def text(value: object) -> Content:
    return (Span(str(value)),)


def styled(value: object, kind: str) -> Content:
    return (Span(str(value), kind),)


def plain(content: Content) -> str:
    """The text of a cell, as a reader sees it (flags and alarms included, without their leading space)."""
    return " ".join(s.text for s in content if s.text).replace("  ", " ")


def flag(anchors: Iterable[str]) -> Content:
    """The visible mark of a figure that comes from invalid runs, linking to the (first) run's validity row."""
    unique = list(dict.fromkeys(anchors))
    if not unique:
        return ()
    label = "⚠ invalid run" if len(unique) == 1 else f"⚠ {len(unique)} invalid runs"
    return (Span(label, "flag", unique[0]),)


def alarm(anchors: Iterable[str]) -> Content:
    """The mark of an audit that found an anomaly: loud on purpose, since any anomaly is a bug."""
    unique = list(dict.fromkeys(anchors))
    return (Span("⚠ ANOMALY", "alarm", unique[0]),) if unique else ()


INVALID: Final = (Span("INVALID", "flag"),)


@dataclass(frozen=True)
class Row:
    """A table row: its cells, and the row's ``id`` (an anchor other parts of the page link to) and class."""

    cells: tuple[Content, ...]
    id: str = ""
    css: str = ""

    def text(self, index: int) -> str:
        return plain(self.cells[index])


@dataclass(frozen=True)
class Table:
    """A table: the first ``left`` columns and those in ``text`` are left-aligned text, the others figures."""

    header: tuple[Content, ...]
    rows: tuple[Row, ...]
    left: int = 1
    text: tuple[int, ...] = ()
    css: str = ""

    def row(self, id: str) -> Row:
        """The row whose id is ``id``."""
        for row in self.rows:
            if row.id == id:
                return row
        raise KeyError(id)

    def column(self, name: str) -> int:
        for index, head in enumerate(self.header):
            if plain(head) == name:
                return index
        raise KeyError(name)

    def align(self, index: int) -> str:
        if index < self.left:
            return "l nw"
        return "l" if index in self.text else ""


def table(
    header: Sequence[Content | str],
    rows: Iterable[Row | Sequence[Content]],
    *,
    left: int = 1,
    text: Sequence[int] = (),
    css: str = "",
) -> Table:
    heads = tuple(h if isinstance(h, tuple) else (Span(h),) for h in header)
    built = tuple(r if isinstance(r, Row) else Row(tuple(r)) for r in rows)
    return Table(heads, built, left, tuple(text), css)


@dataclass(frozen=True)
class Figure:
    """A chart (inline SVG, drawn by :mod:`bench.report.charts`); its caption is in the section's template."""

    svg: str
    key: str


# -- the verdict ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One topology's figure for a metric: ``value`` (for the ratio to the monolith), its display text, the anchors
    of the invalid runs it comes from, and the anchors of the audits that found an anomaly (shown as an alarm)."""

    value: float | None
    text: str
    invalid: tuple[str, ...] = ()
    alarm: tuple[str, ...] = ()
    #: The ratio to the monolith when the experiment measured it paired per round, with its interval ("×2.8
    #: (2.6–3.0)"); empty: the verdict divides the two values.
    ratio: str = ""
    #: Whether the figure's interval, or its ratio's, is wider than ±10% of it.
    wide: bool = False
    #: What the figure is, when it is an aggregate of several runs ("median of 3 rounds, 75% interval", "largest of
    #: 3 rounds"); empty for a single run's figure or a count.
    basis: str = ""


Fill = Callable[["Context"], dict[str, Cell]]


@dataclass(frozen=True)
class Link:
    """A link to another part of the page: the ``anchor`` (an element's id) and the link's ``text``; the page has
    that part only when the run made the tables ``needs``."""

    anchor: str
    text: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    """One row of the verdict: which aspect it informs, what it measures, the tables it reads, and the command that
    produces them. ``fill`` is None while no code renders those tables yet. ``ratio``: whether the ratio to the
    monolith means something (it does not for a count that must be 0). ``rank`` orders the rows of one aspect that
    come from different sections (equal ranks keep the order of the sections). ``details``: a link to the part of the
    page that shows how the figures were reached."""

    aspect: str
    name: str
    tables: tuple[str, ...]
    command: str
    fill: Fill | None = None
    headline: bool = False
    ratio: bool = True
    rank: int = 0
    details: Link | None = None


@dataclass(frozen=True)
class Section:
    """One section of the page: ``build`` makes its view model when this run produced ``tables``, ``template``
    (under ``templates/sections/``) renders it; else the page says "not measured in this run" with ``command``."""

    id: str
    title: str
    build: Callable[[Context], Any]
    template: str
    tables: tuple[str, ...] = ()
    command: str = "archbench run --experiments network"


@dataclass(frozen=True)
class Part:
    """What one section module adds to the report: sections of the page and rows of the verdict."""

    sections: tuple[Section, ...] = ()
    metrics: tuple[Metric, ...] = field(default=())

"""The page: each section's view model rendered by its Jinja2 template (autoescaped), the stylesheet inlined, into
one self-contained HTML file (no script, no external reference: it opens anywhere, offline, and prints)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from bench.report import charts
from bench.report.context import Context, audit_anchor, fault_of
from bench.report.format import plural
from bench.report.sections import SECTIONS
from bench.report.sections.common import topo
from bench.report.sections.consistency import failed_audits
from bench.report.view import Section


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(topo=topo, plural=plural)
    return env


def stylesheet() -> str:
    css = resources.files("bench.report").joinpath("templates", "style.css").read_text(encoding="utf-8")
    return css + "".join(f".t-{t}{{color:{c}}}" for t, c in charts.TOPOLOGY_COLORS.items())


@dataclass(frozen=True)
class Rendered:
    id: str
    title: str
    body: Markup


@dataclass(frozen=True)
class Invalid:
    """A count of invalid runs of one kind, for the banner: ``1 of 10 scaling steps``, linking to their table."""

    count: int
    total: int
    what: str
    anchor: str
    table: str = "table"


@dataclass(frozen=True)
class Banner:
    invalid: tuple[Invalid, ...]
    anomalies: int
    anomaly_topologies: str
    first_anomaly: str


def banner(ctx: Context) -> Banner:
    """The warnings at the top of the page: invalid runs, and any anomaly the consistency audit found."""
    counts = []
    steps, impact = ctx.table("steps"), ctx.table("failure_impact")
    if not steps.empty:
        counts.append(
            Invalid(int((~steps["valid"].astype(bool)).sum()), len(steps), "network runs", "steps", "validity table")
        )
    if "load_valid" in impact:
        counts.append(
            Invalid(
                int((~impact["load_valid"].astype(bool)).sum()), len(impact), "fault runs", "recovery", "recovery table"
            )
        )
    for name, what, anchor in (
        ("scaling", "scaling steps", "scaling-steps"),
        ("deployment", "restarts", "deployment-runs"),
    ):
        frame = ctx.table(name)
        if "valid" in frame:
            counts.append(Invalid(int((~frame["valid"].astype(bool)).sum()), len(frame), what, anchor))
    failed = failed_audits(ctx.table("consistency"))
    first = audit_anchor(str(failed["topology"].iloc[0]), fault_of(failed.iloc[0])) if len(failed) else ""
    return Banner(
        tuple(c for c in counts if c.count),
        len(failed),
        ", ".join(dict.fromkeys(map(str, failed.get("topology", [])))),
        first,
    )


def render_section(ctx: Context, section: Section) -> Rendered:
    env = environment()
    if ctx.has(*section.tables):
        template = env.get_template(f"sections/{section.template}")
        body = template.render(view=section.build(ctx), ctx=ctx)
    else:
        body = env.get_template("not_measured.html.j2").render(command=section.command)
    return Rendered(section.id, section.title, Markup(body.strip()))


def render_html(ctx: Context) -> str:
    """The whole page as one string."""
    sections = [render_section(ctx, s) for s in SECTIONS]
    page = (
        environment()
        .get_template("page.html.j2")
        .render(
            ctx=ctx,
            env=ctx.meta.environment,
            sections=sections,
            banner=banner(ctx),
            css=Markup(stylesheet()),
        )
    )
    return page.strip() + "\n"


def render_report(results_dir: Path, out_file: Path | None = None) -> Path:
    """Render the HTML report of ``results_dir`` into ``out_file`` (default ``results_dir / "report.html"``).

    Reads only the results directory; returns the path written.
    """
    results_dir = Path(results_dir)
    out = Path(out_file) if out_file is not None else results_dir / "report.html"
    page = render_html(Context.load(results_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out

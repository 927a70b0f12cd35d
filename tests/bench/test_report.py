"""The report of a real (tiny) run of every topology: each topology fills its column with the numbers of its
results files, and the experiments the run did not make say how to measure them. The sections themselves are tested
on view models in tests/report, without processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import render_report
from bench.report.context import Context
from bench.report.format import ms
from bench.report.sections import SECTIONS, VERDICT
from bench.report.sections.verdict import Verdict
from plumbing.topology import TOPOLOGIES

pytestmark = pytest.mark.sockets  # the tiny_results fixture runs every topology for real

FAILURE_COMMAND = "archbench run --experiments failure"


@pytest.fixture(scope="module")
def page(tiny_results: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = render_report(tiny_results, tmp_path_factory.mktemp("report") / "report.html")
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ctx(tiny_results: Path) -> Context:
    return Context.load(tiny_results)


@pytest.fixture(scope="module")
def verdict(ctx: Context) -> Verdict:
    built: Verdict = VERDICT.build(ctx)
    return built


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_real_run_fills_the_topologys_column(
    topology: str, page: str, ctx: Context, verdict: Verdict, tiny_results: Path
) -> None:
    assert topology in verdict.topologies
    # The checkout p50 is the median over the rounds that could carry it, with its interval.
    estimates = ctx.table("estimates")
    checkout = estimates[(estimates["topology"] == topology) & (estimates["figure"] == "checkout_p50_ms")].iloc[0]
    row = verdict.row("checkout p50 at low load")
    assert row.figures is not None
    figure = row.figures[topology]
    assert figure is not None
    if checkout["n"]:
        assert figure.cell.text.startswith(f"{ms(checkout['value'] / 1e3)} ms")
    else:
        assert figure.cell.text == "no round could carry it"
    assert f'<span class="v">{figure.cell.text}</span>' in page
    processes = verdict.row("processes to run").figures
    assert processes is not None
    assert processes[topology] is not None
    databases = verdict.row("databases").figures  # placement, derived from the run's topology.json and files
    assert databases is not None
    assert databases[topology] is not None
    steps = ctx.table("steps")
    for _, step in steps[steps["topology"] == topology].iterrows():
        assert f'<tr id="step-{topology}-{step["phase"]}-{step["step"]}"' in page
    assert f"</span>{topology}</th>" in page


def test_every_section_and_the_experiments_the_run_did_not_make(page: str, verdict: Verdict) -> None:
    positions = [page.find(f'<section id="{s.id}">') for s in SECTIONS]
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions)
    for section_id in ("failure-heatmap", "recovery", "consistency", "scaling", "deployment"):
        body = page[page.find(f'<section id="{section_id}">') :]
        body = body[: body.find("</section>")]
        assert "Not measured in this run" in body, section_id
    row = verdict.row("blast radius (mean")
    assert (row.figures, row.command) == (None, FAILURE_COMMAND)
    assert "<script" not in page.lower()

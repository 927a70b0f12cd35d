"""The independent-deployment section and verdict rows: each restart with its timeline and events, and like compared
with like."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.report.context import Context
from tests.report.tables import scaling_deployment_tables
from tests.report.views import cells, context, measured, texts, verdict, view, write

TOPOLOGIES = ("monolith", "microservices")
DEPLOYMENT_COMMAND = "archbench run --experiments deployment"


def results(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> Context:
    return context(write(tmp_path / "results", tables, TOPOLOGIES, ("deployment",)))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    return results(tmp_path_factory.mktemp("deployment"), scaling_deployment_tables())


def test_deployment_timelines_have_every_scenario_and_its_events(ctx: Context) -> None:
    deployment = view(ctx, "deployment")
    assert [t.title.split(":")[0] for t in deployment.timelines] == ["monolith-1", "monolith-n", "single", "rolling"]
    for timeline in deployment.timelines:
        scenario = timeline.title.split(":")[0]
        component = "monolith" if scenario.startswith("monolith") else "inventory"
        assert timeline.title == f"{scenario}: {scenario} restart of {component} under load (synthetic)"
    events = {text for t in deployment.timelines for _, text in t.events}
    for event in ("stop monolith-1", "monolith-2 ready", "stop inventory-2", "inventory-1 ready"):
        assert event in events, event
    assert [t.valid for t in deployment.timelines] == [True, True, False, True]  # the single scenario is invalid
    assert deployment.timeline is not None
    assert ">failed requests per bin</text>" in deployment.timeline.svg


def test_deployment_table_has_the_figures_of_each_restart(ctx: Context) -> None:
    table = view(ctx, "deployment").table
    row = table.row("deploy-monolith-1")
    columns = ("errors during", "p99 before ms", "p99 during ms", "max during ms", "restart", "to steady state")
    assert [row.text(table.column(c)) for c in columns] == ["37 (18.50%)", "9", "1,900", "2,850", "1.20 s", "1 s"]
    assert row.cells[0][1].text == "monolith-1 restart of monolith under load (synthetic)"
    assert table.row("deploy-rolling").text(table.column("errors during")) == "0 (0.00%)"
    single = table.row("deploy-single")
    assert single.css == "invalid"
    assert single.text(table.column("reasons")) == "achieved 97% of the target rate (planted)"


def test_verdict_deployment_rows_compare_like_with_like(ctx: Context) -> None:
    rows = verdict(ctx)
    one = rows.row("restart with one replica / worker")
    assert texts(one) == {
        "monolith": "37 errors (18.50%) restarting the whole app (1 worker); steady after 1 s",
        "microservices": "12 errors (6.00%) restarting inventory (1 replica); steady after 1 s",
    }
    assert one.figures is not None
    assert one.figures["microservices"] is not None
    assert one.figures["microservices"].ratio == "×0.32 vs monolith"
    assert cells(one)["microservices"].invalid == ("deploy-single",)
    rolling = rows.row("restart with several, one at a time")
    assert texts(rolling)["monolith"].startswith("0 errors restarting the whole app, 2 workers one at a time")
    assert texts(rolling)["microservices"].startswith("0 errors restarting inventory, 2 replicas one at a time")
    assert rolling.figures is not None
    assert rolling.figures["microservices"] is not None
    assert rolling.figures["microservices"].ratio == ""  # no ratio to a baseline of 0


def test_method_says_how_the_restarts_measure(ctx: Context) -> None:
    method = view(ctx, "method")
    assert method.deployment_method is True
    assert "deployment" not in [p.experiment for p in method.left]  # meta has no parameters of it


def test_without_the_tables_the_report_says_how_to_measure_them(tmp_path: Path) -> None:
    ctx = results(tmp_path, {"scaling": scaling_deployment_tables()["scaling"]})
    assert not measured(ctx, "deployment")
    for name in ("restart with one replica / worker", "restart with several, one at a time"):
        row = verdict(ctx).row(name)
        assert (row.figures, row.command) == (None, DEPLOYMENT_COMMAND)


def test_partial_tables_render_what_they_have(tmp_path: Path) -> None:
    tables = {k: v for k, v in scaling_deployment_tables().items() if k != "deployment_timeline"}
    deployment = view(results(tmp_path, tables), "deployment")
    assert deployment.timeline is None  # the page says: no bin-by-bin timeline in this run, with the command
    assert deployment.command == DEPLOYMENT_COMMAND
    deployment.table.row("deploy-rolling")

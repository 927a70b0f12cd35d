"""The report's scaling, independent-deployment and complexity sections, rendered from synthetic tables shaped as the
experiments write them: the figures of the tables appear, the model is labelled as a model, each restart has its
timeline with its events, and a run without those tables says how to measure them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from bench.common import usl
from bench.report import render_report
from bench.report.charts import MODEL_LABEL
from bench.report.results import save
from tests.bench.pages import section, verdict_row

TOPOLOGIES = ("monolith", "microservices")
SCALING_COMMAND = "archbench run --experiments scaling"
DEPLOYMENT_COMMAND = "archbench run --experiments deployment"
COMPLEXITY = pd.DataFrame(
    [
        {"topology": "monolith", "processes": 1, "listening_ports": 1, "config_entries": 6, "k8s_lines": 80},
        {"topology": "microservices", "processes": 6, "listening_ports": 6, "config_entries": 40, "k8s_lines": 420},
    ]
).assign(compose_lines=[20, 110])


def render(tmp_path: Path, tables: dict[str, pd.DataFrame], experiments: tuple[str, ...]) -> str:
    """The report of a results directory holding ``tables``, as a run of ``experiments`` would have saved it."""
    meta = {
        "environment": {"cpu_model": "synthetic", "cpu_count": 2, "command": "archbench run"},
        "parameters": {
            "topologies": list(TOPOLOGIES),
            "experiments": list(experiments),
            "scaling": {"slo_p99": 0.05, "max_replicas": 3},
        },
    }
    out = save(tmp_path / "results", tables, meta)
    return render_report(out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, scaling_deployment_tables: dict[str, pd.DataFrame]) -> str:
    tables = scaling_deployment_tables | {"complexity": COMPLEXITY}
    return render(tmp_path_factory.mktemp("scaling-deployment"), tables, ("scaling", "deployment"))


def row_of(page: str, anchor: str) -> str:
    match = re.search(rf'<tr id="{anchor}"[^>]*>.*?</tr>', page, re.DOTALL)
    assert match, anchor
    return match.group(0)


def model_of(models: pd.DataFrame, topology: str, mix: str) -> pd.Series:
    return models[(models["topology"] == topology) & (models["mix"] == mix)].iloc[0]


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", html, re.DOTALL)


def test_the_page_stays_self_contained(page: str) -> None:
    lowered = page.lower()
    for needle in ("<script", "<link", "@import", "src="):
        assert needle not in lowered, needle
    without_namespaces = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", page)
    assert "http://" not in without_namespaces
    assert "https://" not in without_namespaces
    assert all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', page))


def test_scaling_chart_shows_the_measured_steps_and_the_model_as_a_model(page: str) -> None:
    scaling = section(page, "scaling")
    throughput = svgs(scaling)[0]
    for figure in ("1,450", "2,610", "620", "1,100", "900", "1,500", "380", "700"):
        assert f">{figure}</text>" in throughput, figure
    assert ">3,400 invalid</text>" in throughput  # the invalid step is named so on the chart
    assert f">{MODEL_LABEL}</text>" in throughput  # the legend of the dashed series
    for topology in TOPOLOGIES:
        assert f">{topology} model</text>" in throughput  # and each dashed line, at its end
    assert "stroke-dasharray" in throughput
    # The model is drawn out to 4x the most replicas measured (3): the axis reaches 12.
    assert ">12</text>" in throughput
    assert "model (USL), not measured" in scaling[scaling.find("<figcaption>") :]


def test_model_coefficients_are_those_of_the_fit(page: str, scaling_deployment_tables: dict[str, pd.DataFrame]) -> None:
    models = usl.model_frame(scaling_deployment_tables["scaling"])
    mono = model_of(models, "monolith", "browse-heavy")
    assert mono["kind"] == "usl"
    scaling = section(page, "scaling")
    table = scaling[scaling.find("<h3>The model") : scaling.find('<h3 id="scaling-steps">')]
    row = table[table.find("browse-heavy") :]
    row = row[: row.find("</tr>")]
    assert "<td class=l>usl</td>" in row
    assert "<td>1,450</td>" in row  # lambda: with three points the fit goes through them
    assert f"<td>{mono['sigma']:.3g}</td>" in row
    assert f"<td>{mono['kappa']:.3g}</td>" in row
    assert f"peaks at {mono['peak_n']:.2f} workers" in row
    # Two points: Amdahl, kappa fixed at 0, no peak.
    micro = model_of(models, "microservices", "browse-heavy")
    assert (micro["kind"], micro["kappa"]) == ("amdahl", 0.0)
    assert table.count("<td class=l>amdahl</td>") == 3
    assert table.count("does not peak (κ = 0)") == 3
    assert "1 point without a sustainable rate left out" in table


def test_a_model_table_the_run_wrote_is_used_as_written(
    tmp_path: Path, scaling_deployment_tables: dict[str, pd.DataFrame]
) -> None:
    models = usl.model_frame(scaling_deployment_tables["scaling"])
    models.loc[models["topology"] == "monolith", "lambda_rps"] = 1234.0
    page = render(tmp_path, scaling_deployment_tables | {"scaling_model": models}, ("scaling",))
    scaling = section(page, "scaling")
    table = scaling[scaling.find("<h3>The model") : scaling.find('<h3 id="scaling-steps">')]
    assert table.count("<td>1,234</td>") == 2  # both mixes of the monolith
    assert "<td>1,450</td>" not in table


def test_each_step_has_its_cpu_and_memory(page: str) -> None:
    row = row_of(page, "scale-microservices-browse-heavy-2")
    # CPU µs/request, processes, RSS of all processes (7 x 45 MiB) and per replica, as the table has them.
    for cell in ("<td>1,500</td>", "<td>1,510</td>", "<td>7</td>", "<td>315</td>", "<td>45</td>"):
        assert cell in row, cell
    assert "<td class=l>gateway</td>" in row
    invalid = row_of(page, "scale-monolith-browse-heavy-3")
    assert 'class="invalid"' in invalid
    assert "INVALID" in invalid
    assert "(planted)" in invalid
    assert "no rate met the SLO" in row_of(page, "scale-microservices-checkout-heavy-3")
    scaling = section(page, "scaling")
    assert len(svgs(scaling)) == 2  # throughput, memory
    assert ">per replica of the scaled component (mean peak RSS)</text>" in svgs(scaling)[1]
    # Steps where the generator shared the SUT's CPUs are called out above the chart.
    assert "In 2 of 10 steps the load generator ran on one of the cores" in scaling


def test_the_busiest_process_is_named(page: str) -> None:
    scaling = section(page, "scaling")
    saturation = scaling[scaling.find("<h3>Which process saturates") :]
    assert "<b>inventory-1</b> 25%" in saturation  # checkout-heavy at 2 replicas: the scaled service's first replica
    assert "46% (2)" in saturation  # the scaled component's two processes together
    assert "<b>monolith-1</b> 100%" in saturation


def test_verdict_scaling_rows_give_the_gain_and_the_models_peak(page: str) -> None:
    browse = verdict_row(page, "(browse-heavy mix)")
    model = usl.fit([1, 2, 3], [1450.0, 2610.0, 3400.0])
    assert (
        f"+975 req/s per added worker: 1,450 → 3,400 req/s at 3 workers (×2.34); the model peaks at "
        f"{model.peak_n():.2f} workers ({model.predict(model.peak_n()):,.0f} req/s); the load generator shared the "
        "SUT&#x27;s CPUs</span>"
    ) in browse
    assert "+600 req/s per added replica: 900 → 1,500 req/s at 2 replicas of gateway (×1.67)" in browse
    assert "×0.62 vs monolith" in browse  # 600 / 975 per added replica
    assert 'class="flag" href="#scale-monolith-browse-heavy-3"' in browse  # from an invalid step
    checkout = verdict_row(page, "(checkout-heavy mix)")
    assert "+320 req/s per added replica: 380 → 700 req/s at 2 replicas of inventory (×1.84)" in checkout
    assert "the model does not peak (κ = 0)" in checkout
    assert "flag" not in checkout


def test_deployment_timelines_have_every_scenario_and_its_events(page: str) -> None:
    deployment = section(page, "deployment")
    (chart,) = svgs(deployment)
    for scenario in ("monolith-1", "monolith-n", "single", "rolling"):
        assert f">{scenario}: {scenario} restart of" in chart, scenario
    for event in ("stop monolith-1", "monolith-2 ready", "stop inventory-2", "inventory-1 ready"):
        assert f">{event}</text>" in chart, event
    assert "✗ invalid run</text>" in chart  # the single scenario
    assert ">failed requests per bin</text>" in chart
    assert "graceful" in deployment


def test_deployment_table_has_the_figures_of_each_restart(page: str) -> None:
    row = row_of(page, "deploy-monolith-1")
    for cell in ("<td>37 (18.50%)</td>", "<td>9</td>", "<td>1,900</td>", "<td>2,850</td>", ">1.20 s<", ">1 s<"):
        assert cell in row, cell
    assert "monolith-1 restart of monolith under load (synthetic)" in row
    assert "<td>0 (0.00%)</td>" in row_of(page, "deploy-rolling")
    single = row_of(page, "deploy-single")
    assert 'class="invalid"' in single
    assert "achieved 97% of the target rate (planted)" in single


def test_verdict_deployment_rows_compare_like_with_like(page: str) -> None:
    one = verdict_row(page, "restart with one replica / worker")
    assert "37 errors (18.50%) restarting the whole app (1 worker); steady after 1 s" in one
    assert "12 errors (6.00%) restarting inventory (1 replica); steady after 1 s" in one
    assert "×0.32 vs monolith" in one
    assert 'class="flag" href="#deploy-single"' in one
    rolling = verdict_row(page, "restart with several, one at a time")
    assert "0 errors restarting the whole app, 2 workers one at a time" in rolling
    assert "0 errors restarting inventory, 2 replicas one at a time" in rolling
    assert "vs monolith" not in rolling  # no ratio to a baseline of 0


def test_complexity_has_its_own_section(page: str) -> None:
    complexity = section(page, "complexity")
    row = complexity[complexity.find("configuration entries") :]
    assert row[: row.find("</tr>")].endswith("<td>6</td><td>40</td>")
    assert "Kubernetes manifest lines" in complexity
    assert "counted live" not in complexity  # this run has no live counts


def test_live_complexity_counts_sit_beside_the_files(tmp_path: Path) -> None:
    live = COMPLEXITY.assign(live_processes=[1, 6], live_connections=[0, 9])
    complexity = section(render(tmp_path, {"complexity": live}, ("network",)), "complexity")
    row = complexity[complexity.find("TCP connections between its processes (counted live)") :]
    assert row[: row.find("</tr>")].endswith("<td>0</td><td>9</td>")
    assert "processes running (counted live)" in complexity


def test_method_says_how_the_new_experiments_measure(page: str) -> None:
    method = section(page, "method")
    assert "<b>Scaling</b>" in method
    assert "<b>Independent deployment</b>" in method
    assert "finishes the requests in flight" in method
    assert "Parameters of the scaling experiment" in method
    assert "<code>0.05</code>" in method
    assert "Parameters of the deployment experiment" not in method  # meta has none


def test_invalid_steps_and_restarts_are_counted_in_the_banner(page: str) -> None:
    top = page[: page.find('<section id="verdict">')]
    assert '1 of 10 scaling steps (<a href="#scaling-steps">table</a>)' in top
    assert '1 of 4 restarts (<a href="#deployment-runs">table</a>)' in top


def test_without_the_tables_the_report_says_how_to_measure_them(tmp_path: Path) -> None:
    page = render(tmp_path, {"complexity": COMPLEXITY}, ("network",))
    for name, command in (
        ("(browse-heavy mix)", SCALING_COMMAND),
        ("(checkout-heavy mix)", SCALING_COMMAND),
        ("restart with one replica / worker", DEPLOYMENT_COMMAND),
        ("restart with several, one at a time", DEPLOYMENT_COMMAND),
    ):
        row = verdict_row(page, name)
        assert "not measured in this run" in row, name
        assert command in row, name
    assert "Not measured in this run" in section(page, "scaling")
    assert SCALING_COMMAND in section(page, "scaling")
    assert DEPLOYMENT_COMMAND in section(page, "deployment")
    assert "<b>Scaling</b>" not in section(page, "method")
    assert "Not measured" not in section(page, "complexity")


def test_partial_tables_render_what_they_have(
    tmp_path: Path, scaling_deployment_tables: dict[str, pd.DataFrame]
) -> None:
    tables = {
        k: v for k, v in scaling_deployment_tables.items() if k not in ("scaling_processes", "deployment_timeline")
    }
    page = render(tmp_path, tables, ("scaling", "deployment"))
    assert "Per-process CPU not in this run" in section(page, "scaling")
    deployment = section(page, "deployment")
    assert "No bin-by-bin timeline in this run" in deployment
    assert svgs(deployment) == []
    row_of(page, "deploy-rolling")

"""The scaling section and verdict rows, from synthetic tables shaped as the experiment writes them: the measured
steps, the model labelled as a model, each step's CPU and memory, the busiest process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.common import usl
from bench.report.charts import MODEL_LABEL
from bench.report.context import Context
from bench.report.render import banner
from tests.report.tables import scaling_deployment_tables
from tests.report.views import cells, context, measured, texts, verdict, view, write

TOPOLOGIES = ("monolith", "microservices")
SCALING = {"scaling": {"slo_p99": 0.05, "max_replicas": 3}}


def results(tmp_path: Path, tables: dict[str, pd.DataFrame], experiments: tuple[str, ...] = ("scaling",)) -> Context:
    return context(write(tmp_path / "results", tables, TOPOLOGIES, experiments, **SCALING))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    return results(tmp_path_factory.mktemp("scaling"), scaling_deployment_tables(), ("scaling", "deployment"))


def model_of(models: pd.DataFrame, topology: str, mix: str) -> pd.Series:
    return models[(models["topology"] == topology) & (models["mix"] == mix)].iloc[0]


def test_scaling_chart_shows_the_measured_steps_and_the_model_as_a_model(ctx: Context) -> None:
    scaling = view(ctx, "scaling")
    assert [title for title, _ in scaling.panels] == ["browse-heavy mix", "checkout-heavy mix"]
    measured_points = {
        (title, line.topology): [(p.replicas, p.value, p.valid) for p in line.points]
        for title, lines in scaling.panels
        for line in lines
    }
    assert measured_points[("browse-heavy mix", "monolith")] == [
        (1, 1450.0, True),
        (2, 2610.0, True),
        (3, 3400.0, False),  # the invalid step is drawn as such
    ]
    assert [v for _, v, _ in measured_points[("checkout-heavy mix", "microservices")]][:2] == [380.0, 700.0]
    # The model is drawn out to 4x the most replicas measured (3): to 12.
    for _, lines in scaling.panels:
        for line in lines:
            assert line.model[0][0] == 1.0
            assert line.model[-1][0] == pytest.approx(12.0)
    assert scaling.model_label == MODEL_LABEL == "model (USL), not measured"
    assert "stroke-dasharray" in scaling.throughput.svg
    assert f">{MODEL_LABEL}</text>" in scaling.throughput.svg


def test_model_coefficients_are_those_of_the_fit(ctx: Context) -> None:
    models = usl.model_frame(scaling_deployment_tables()["scaling"])
    mono = model_of(models, "monolith", "browse-heavy")
    assert mono["kind"] == "usl"
    table = view(ctx, "scaling").models
    row = table.rows[0]
    assert [row.text(i) for i in range(1, 7)] == [
        "browse-heavy",
        "usl",
        "1,450",  # lambda: with three points the fit goes through them
        f"{mono['sigma']:.3g}",
        f"{mono['kappa']:.3g}",
        "3",
    ]
    assert f"peaks at {mono['peak_n']:.2f} workers" in row.text(7)
    # Two points: Amdahl, kappa fixed at 0, no peak.
    micro = model_of(models, "microservices", "browse-heavy")
    assert (micro["kind"], micro["kappa"]) == ("amdahl", 0.0)
    assert [r.text(2) for r in table.rows].count("amdahl") == 3
    assert [r.text(7) for r in table.rows].count("does not peak (κ = 0)") == 3
    assert any("1 point without a sustainable rate left out" in r.text(9) for r in table.rows)


def test_a_model_table_the_run_wrote_is_used_as_written(tmp_path: Path) -> None:
    tables = scaling_deployment_tables()
    models = usl.model_frame(tables["scaling"])
    models.loc[models["topology"] == "monolith", "lambda_rps"] = 1234.0
    table = view(results(tmp_path, tables | {"scaling_model": models}), "scaling").models
    assert [r.text(3) for r in table.rows].count("1,234") == 2  # both mixes of the monolith
    assert "1,450" not in [r.text(3) for r in table.rows]


def test_each_step_has_its_cpu_and_memory(ctx: Context) -> None:
    scaling = view(ctx, "scaling")
    steps = scaling.table
    row = steps.row("scale-microservices-browse-heavy-2")
    columns = ("sustainable req/s", "CPU µs/request", "processes", "RSS, all MiB", "RSS per replica MiB", "scaled")
    # CPU µs/request, processes, RSS of all processes (7 x 45 MiB) and per replica, as the table has them.
    assert [row.text(steps.column(c)) for c in columns] == ["1,500", "1,510", "7", "315", "45", "gateway"]
    invalid = steps.row("scale-monolith-browse-heavy-3")
    assert invalid.css == "invalid"
    assert invalid.text(steps.column("valid")) == "INVALID"
    assert "(planted)" in invalid.text(steps.column("note"))
    assert steps.row("scale-microservices-checkout-heavy-3").text(5) == "no rate met the SLO"
    assert [title for title, _ in scaling.panels] == ["browse-heavy mix", "checkout-heavy mix"]
    assert ">per replica of the scaled component (mean peak RSS)</text>" in scaling.memory.svg
    # Steps where the generator shared the SUT's CPUs are called out above the chart.
    assert (scaling.shared_steps, scaling.steps) == (2, 10)


def test_the_busiest_process_is_named(ctx: Context) -> None:
    saturation = view(ctx, "scaling").saturation
    assert saturation is not None
    texts_ = [(r.text(0), r.text(1), r.text(2), r.text(3)) for r in saturation.rows]
    assert ("microservices", "checkout-heavy", "2", "inventory-1 25%") in texts_  # the scaled service's first replica
    assert ("monolith", "browse-heavy", "1", "monolith-1 100%") in texts_
    row = [r for r in saturation.rows if (r.text(0), r.text(1), r.text(2)) == ("microservices", "checkout-heavy", "2")]
    assert row[0].text(saturation.column("inventory")) == "46% (2)"  # its two processes together
    assert row[0].cells[3][0].kind == "b"


def test_verdict_scaling_rows_give_the_gain_and_the_models_peak(ctx: Context) -> None:
    rows = verdict(ctx)
    browse = rows.row("throughput per added replica / worker, scaling only what saturates (browse-heavy mix)")
    model = usl.fit([1, 2, 3], [1450.0, 2610.0, 3400.0])
    assert texts(browse)["monolith"] == (
        f"+975 req/s per added worker: 1,450 → 3,400 req/s at 3 workers (×2.34); the model peaks at "
        f"{model.peak_n():.2f} workers ({model.predict(model.peak_n()):,.0f} req/s); the load generator shared the "
        "SUT's CPUs"
    )
    assert texts(browse)["microservices"].startswith(
        "+600 req/s per added replica: 900 → 1,500 req/s at 2 replicas of gateway (×1.67)"
    )
    assert browse.figures is not None
    assert browse.figures["microservices"] is not None
    assert browse.figures["microservices"].ratio == "×0.62 vs monolith"  # 600 / 975 per added replica
    assert cells(browse)["monolith"].invalid == ("scale-monolith-browse-heavy-3",)  # from an invalid step
    checkout = rows.row("throughput per added replica / worker, scaling only what saturates (checkout-heavy mix)")
    micro = cells(checkout)["microservices"]
    assert micro.text.startswith("+320 req/s per added replica: 380 → 700 req/s at 2 replicas of inventory (×1.84)")
    assert "the model does not peak (κ = 0)" in micro.text
    assert all(not c.invalid for c in cells(checkout).values())


def test_invalid_steps_are_counted_in_the_banner(ctx: Context) -> None:
    counted = {(c.what, c.anchor): (c.count, c.total) for c in banner(ctx).invalid}
    assert counted[("scaling steps", "scaling-steps")] == (1, 10)
    assert counted[("restarts", "deployment-runs")] == (1, 4)


def test_without_the_tables_the_report_says_how_to_measure_them(tmp_path: Path) -> None:
    ctx = results(tmp_path, {"deployment": scaling_deployment_tables()["deployment"]}, ("deployment",))
    assert not measured(ctx, "scaling")
    for mix in ("browse-heavy", "checkout-heavy"):
        row = verdict(ctx).row(f"throughput per added replica / worker, scaling only what saturates ({mix} mix)")
        assert (row.figures, row.missing, row.command) == (None, "not measured", "archbench run --experiments scaling")
    assert view(ctx, "method").scaling_method is False


def test_partial_tables_render_what_they_have(tmp_path: Path) -> None:
    tables = {k: v for k, v in scaling_deployment_tables().items() if k != "scaling_processes"}
    scaling = view(results(tmp_path, tables), "scaling")
    assert scaling.saturation is None  # the page says: per-process CPU not in this run, with the command
    assert scaling.command == "archbench run --experiments scaling"

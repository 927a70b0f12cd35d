"""The operational complexity section (counted from the deployment files, and live when the run has the counts),
the codebase and deploy-file rows of the verdict, and the method section's parameters."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.context import Context
from tests.report.views import context, measured, texts, verdict, view, write

TOPOLOGIES = ("monolith", "microservices")
COMPLEXITY = pd.DataFrame(
    [
        {"topology": "monolith", "processes": 1, "listening_ports": 1, "config_entries": 6, "k8s_lines": 80},
        {"topology": "microservices", "processes": 6, "listening_ports": 6, "config_entries": 40, "k8s_lines": 420},
    ]
).assign(compose_lines=[20, 110])


def results(
    tmp_path: Path, complexity: pd.DataFrame, experiments: tuple[str, ...] = ("network",), **params: object
) -> Context:
    return context(write(tmp_path / "results", {"complexity": complexity}, TOPOLOGIES, experiments, **params))


def rows_of(ctx: Context) -> dict[str, list[str]]:
    table = view(ctx, "complexity")
    return {r.text(0): [r.text(i) for i in range(1, len(r.cells))] for r in table.rows}


def test_complexity_has_its_own_section(tmp_path: Path) -> None:
    ctx = results(tmp_path, COMPLEXITY)
    rows = rows_of(ctx)
    assert rows["configuration entries (ConfigMap and Secret keys, container env)"] == ["6", "40"]
    assert rows["Kubernetes manifest lines"] == ["80", "420"]
    assert not any("counted live" in label for label in rows)  # this run has no live counts
    assert texts(verdict(ctx).row("to deploy it")) == {
        "monolith": "1 ports, 6 config entries, 100 lines",
        "microservices": "6 ports, 40 config entries, 530 lines",
    }


def test_live_complexity_counts_sit_beside_the_files(tmp_path: Path) -> None:
    rows = rows_of(results(tmp_path, COMPLEXITY.assign(live_processes=[1, 6], live_connections=[0, 9])))
    assert rows["TCP connections between its processes (counted live)"] == ["0", "9"]
    assert "processes running (counted live)" in rows


def test_method_lists_the_parameters_the_run_recorded(tmp_path: Path) -> None:
    ctx = results(tmp_path, COMPLEXITY, scaling={"slo_p99": 0.05, "max_replicas": 3})
    assert measured(ctx, "complexity")
    method = view(ctx, "method")
    assert method.scaling_method is False  # no scaling table: its method is not described
    assert [(p.experiment, p.pairs) for p in method.left] == []  # scaling did not run
    ran = results(tmp_path / "ran", COMPLEXITY, ("scaling",), scaling={"slo_p99": 0.05, "max_replicas": 3})
    (scaling,) = view(ran, "method").left
    assert scaling.pairs == (("max_replicas", "3"), ("slo_p99", "0.05"))
    assert view(ran, "method").command == "archbench run"


def test_the_golden_method(golden: Path) -> None:
    method = view(context(golden), "method")
    hardware = dict(method.hardware)
    assert hardware["CPU"] == "AMD EPYC"
    assert hardware["cores"] == "2"
    assert hardware["git commit"] == "8847945c68d6b9c37336b1ee9ddc840234a96497"
    assert dict(method.pinning)["experiments"] == "network, failure, security, scaling, deployment"
    assert [p.experiment for p in method.left] == ["failure", "scaling", "deployment"]
    failure = dict(method.left[0].pairs)
    assert failure["faults"] == "kill:payments, error:payments 50%"
    assert failure["window"] == "1.2"
    assert method.network is not None
    assert dict(method.network.pairs)["sweep_rates"] == "400, 1200, 3600"
    codebase = texts(verdict(context(golden)).row("lines of code per deployable unit"))
    assert codebase["monolith"] == "1 unit, 2,974 lines (170 its own)"
    assert codebase["colocated"].endswith(", run as one process")

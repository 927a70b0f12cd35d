"""The report renders from a results directory alone: one self-contained HTML file, every section, the numbers of
the results files, invalid runs marked, and no deployment imported."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from bench.common.names import INVARIANTS
from bench.experiments.failure import FailureParams, impact, per_second
from bench.report.charts import availability_text
from bench.report.page import detect_text, ms, recover_text, render_report
from bench.report.results import load_results
from bench.system.audit import CHECKS
from bench.system.faults import FaultPlan
from plumbing.topology import TOPOLOGIES
from tests.bench.pages import section, verdict_row

pytestmark = pytest.mark.sockets  # the tiny_results fixture runs every topology for real

HEADINGS = (
    "Verdict",
    "Latency percentile spectrum",
    "Latency against offered load",
    "CPU per request and memory",
    "Where the time goes",
    "Decomposition",
    "Failure impact: availability per fault and operation",
    "Failure impact, second by second",
    "Blast radius and recovery",
    "Data consistency after each fault",
    "Method and environment",
)
FAILURE_SECTIONS = ("failure-heatmap", "failure-timeline", "recovery", "consistency")
FAILURE_COMMAND = "archbench run --experiments failure"
# Rendering must not bring in the code it measures, nor the harness that ran it.
FORBIDDEN = (
    "monolith",
    "microservices",
    "shop",
    "plumbing",
    "bench.system.deploy",
    "bench.experiments.network",
    "bench.run",
    "bench.system.supervisor",
    "bench.load.loadgen",
    "uvicorn",
    "starlette",
    "aiohttp",
    "httpx",
)


@pytest.fixture(scope="module")
def page(tiny_results: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = render_report(tiny_results, tmp_path_factory.mktemp("report") / "report.html")
    return out.read_text(encoding="utf-8")


def copy_results(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("report.html"))
    return target


def row_of(page: str, anchor: str) -> str:
    match = re.search(rf'<tr id="{anchor}"[^>]*>.*?</tr>', page, re.DOTALL)
    assert match, anchor
    return match.group(0)


def test_report_is_self_contained(page: str) -> None:
    lowered = page.lower()
    for needle in ('src="http', 'href="http', "<link", "<script", "@import", "src="):
        assert needle not in lowered, needle
    # Links and SVG references stay inside the page.
    assert all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', page))
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", page))
    # No address at all, once the SVG namespace declarations (names, never fetched) are set aside.
    without_namespaces = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", page)
    assert "http://" not in without_namespaces
    assert "https://" not in without_namespaces
    assert page.count("<svg") >= 5
    assert len(page) < 2_000_000


def test_every_section_in_order_and_every_topology(page: str) -> None:
    positions = [page.find(f"<h2>{heading}") for heading in HEADINGS]
    assert all(p >= 0 for p in positions), dict(zip(HEADINGS, positions, strict=True))
    assert positions == sorted(positions)
    verdict = page[positions[0] : positions[1]]
    for topology in TOPOLOGIES:
        assert f"</span>{topology}</th>" in verdict, topology
    # Rows of experiments this run did not make say so, with the command that measures them.
    assert "not measured in this run" in verdict
    assert "archbench run --experiments failure" in verdict
    assert "<h3>Reproduce</h3><pre><code>" in page


def test_numbers_are_those_of_the_results(page: str, tiny_results: Path) -> None:
    results = load_results(tiny_results)
    steps, ops = results.table("steps"), results.table("ops")
    low = steps[(steps["topology"] == "monolith") & (steps["phase"] == "low")].iloc[0]
    # The monolith's low-load p50, as displayed, in its validity row and in the spectrum table.
    assert page.count(f"<td>{ms(low['p50'])}</td>") >= 2
    assert f"<td>{ms(low['p99'])}</td>" in row_of(page, "step-monolith-low-0")
    # Each topology's checkout p50 at low load fills the verdict.
    for topology in TOPOLOGIES:
        row = ops[(ops["topology"] == topology) & (ops["phase"] == "low") & (ops["op"] == "checkout")].iloc[0]
        assert f'<span class="v">{ms(row["p50"])} ms</span>' in page, topology
    # Every run has a row in the validity table.
    for _, step in steps.iterrows():
        row_of(page, f"step-{step['topology']}-{step['phase']}-{step['step']}")


def test_an_invalid_step_is_marked(page: str, tiny_results: Path, tmp_path: Path) -> None:
    results = load_results(tiny_results)
    was_valid = bool(results.table("steps").query("topology == 'monolith' and phase == 'low'")["valid"].iloc[0])
    # The untouched report marks that run as it was recorded.
    assert ('class="invalid"' in row_of(page, "step-monolith-low-0")) is not was_valid

    copy = copy_results(tiny_results, tmp_path / "flipped")
    steps = pd.read_parquet(copy / "steps.parquet")
    flip = (steps["topology"] == "monolith") & (steps["phase"] == "low")
    steps.loc[flip, "valid"] = False
    steps.loc[flip, "invalid_reasons"] = "flipped by the report test"
    steps.to_parquet(copy / "steps.parquet", index=False)

    out = render_report(copy)
    assert out == copy / "report.html"
    flipped = out.read_text(encoding="utf-8")
    row = row_of(flipped, "step-monolith-low-0")
    assert 'class="invalid"' in row
    assert "INVALID" in row
    assert "flipped by the report test" in row
    # The figures taken from that run (the monolith's low-load latencies and CPU) link to it.
    verdict = flipped[: flipped.find("<h2>Latency percentile spectrum")]
    assert verdict.count('class="flag" href="#step-monolith-low-0"') >= 4
    assert 'network runs (<a href="#steps">validity table</a>) are invalid' in flipped  # the banner at the top


def test_tables_a_run_did_not_make_are_reported_as_not_measured(tiny_results: Path, tmp_path: Path) -> None:
    copy = copy_results(tiny_results, tmp_path / "partial")
    for name in ("traces", "spans", "hops"):
        (copy / f"{name}.parquet").unlink()
    page = render_report(copy).read_text(encoding="utf-8")
    waterfall = page[page.find("<h2>Where the time goes") : page.find("<h2>Decomposition")]
    assert "Not measured in this run" in waterfall
    assert "archbench run --experiments network" in waterfall
    internal_calls = page[page.find("internal calls per checkout") :]
    assert internal_calls.find("not measured in this run") < internal_calls.find("</tr>")


def test_rendering_does_not_import_the_deployments(tiny_results: Path, tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from bench.report import render_report\n"
        f"render_report(Path({str(tiny_results)!r}), Path({str(tmp_path / 'r.html')!r}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, check=True)
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    imported = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert imported == []
    assert "bench.report" in modules
    assert (tmp_path / "r.html").is_file()


def test_verdict_rows_fill_from_the_tables_that_exist(tiny_results: Path, tmp_path: Path) -> None:
    copy = copy_results(tiny_results, tmp_path / "with-failure")
    impact = pd.DataFrame(
        [
            {"topology": t, "fault": fault, "blast_radius": radius, "time_to_recover": 1.5}
            for t in TOPOLOGIES
            for fault, radius in (("kill payments", 1.0 if t == "monolith" else 0.5), ("kill gateway", 1.0))
        ]
    )
    impact.to_parquet(copy / "failure_impact.parquet", index=False)
    page = render_report(copy).read_text(encoding="utf-8")
    verdict = page[: page.find("<h2>Latency percentile spectrum")]
    worst = verdict[verdict.find("blast radius: share") :]
    worst = worst[: worst.find("</tr>")]
    assert '<span class="v">100% (every fault)</span>' in worst  # the monolith
    assert '<span class="v">100% (kill gateway)</span>' in worst
    blast = verdict[verdict.find("blast radius (mean") :]
    blast = blast[: blast.find("</tr>")]
    assert '<span class="v">100% over 2 faults</span>' in blast
    assert '<span class="v">75% over 2 faults</span>' in blast
    assert "×0.75 vs monolith" in blast
    # The consistency audit is another table: still not measured, with its command.
    consistency = verdict[verdict.find("anomalies the audit found") :]
    assert consistency.find("not measured in this run") < consistency.find("</tr>")
    assert "archbench run --experiments failure" in consistency


# -- the failure-impact and consistency sections ---------------------------------------------------------------------

QUICK = FailureParams(
    rate=100.0,
    before=1.0,
    window=1.5,
    after=1.5,
    warmup=0.5,
    faults=(FaultPlan("kill", "payments"), FaultPlan("error", "payments", 0.5), FaultPlan("latency", "inventory", 0.2)),
)
FAILURE_SLO = 0.050
OPS = ("browse", "product", "user", "checkout", "order")


def requests_of(topology: str, plan: FaultPlan, params: FailureParams) -> pd.DataFrame:
    """Synthetic per-request records, shaped as the load generator's: a steady mix, hurt during the fault window as
    that fault would hurt that topology."""
    start = params.warmup + params.before
    end = start + params.window
    count = int(params.rate * (params.warmup + params.before + params.window + params.after))
    rows = []
    for i in range(count):
        intended = i / params.rate
        op = OPS[i % len(OPS)]
        latency, error = 0.002, ""
        if start <= intended < end:
            if plan.kind == "kill" and (topology != "microservices" or op in ("user", "checkout")):
                error = "refused"
            elif plan.kind == "error" and op == "checkout" and i % 2:
                error = "5xx"
            elif plan.kind == "latency" and op in ("browse", "product", "checkout"):
                latency += plan.value
        rows.append(
            {"op": op, "intended": intended, "done": intended + latency, "error": error, "warmup": intended < 0.5}
        )
    return pd.DataFrame(rows)


def failure_tables(params: FailureParams, *, anomaly: tuple[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The three tables of the failure experiment, computed by its own functions from synthetic records; the
    ``(topology, fault)`` of ``anomaly`` gets an audit that never became consistent. Colocated's error run is
    invalid."""
    timelines, impacts, audits = [], [], []
    start = params.warmup + params.before
    for topology in TOPOLOGIES:
        for index, plan in enumerate(params.faults):
            frame = requests_of(topology, plan, params)
            timeline = per_second(frame, start, start + params.window)
            timelines.append(timeline.assign(topology=topology, fault=plan.name))
            invalid = topology == "colocated" and plan.kind == "error"
            impacts.append(
                {
                    "topology": topology,
                    "fault": plan.name,
                    "kind": plan.kind,
                    "target": plan.target,
                    **impact(frame, timeline, start, start + params.window, params, FAILURE_SLO),
                    "restart_seconds": 0.25 + 0.125 * TOPOLOGIES.index(topology) if plan.kind == "kill" else math.nan,
                    "load_valid": not invalid,
                    "load_invalid_reasons": "send lag p99 9.9 ms exceeds 1 ms (planted)" if invalid else "",
                }
            )
            broken = (topology, plan.name) == anomaly
            audits.append(
                {
                    "topology": topology,
                    "fault": plan.name,
                    "consistent": not broken,
                    "convergence_seconds": math.nan if broken else 0.004 + 0.25 * index,
                    **{f"anomalies_{name}": 2 if broken and name == "wallet_balances" else 0 for name in CHECKS},
                    "orders_confirmed": 35 + index,
                    "orders_rejected": 7,
                    "orders_pending": 0,
                }
            )
    return {
        "failure_timeline": pd.concat(timelines, ignore_index=True),
        "failure_impact": pd.DataFrame(impacts),
        "consistency": pd.DataFrame(audits),
    }


def with_failure(
    source: Path, target: Path, *, anomaly: tuple[str, str] | None = None, drop: tuple[str, ...] = ()
) -> Path:
    """A copy of ``source`` with the failure experiment's tables and parameters, less the tables in ``drop``."""
    copy = copy_results(source, target)
    for name, frame in failure_tables(QUICK, anomaly=anomaly).items():
        frame.to_parquet(copy / f"{name}.parquet", index=False)
    meta = json.loads((copy / "meta.json").read_text())
    meta["parameters"]["failure"] = asdict(QUICK) | {"slo_p99": FAILURE_SLO}
    meta["parameters"]["experiments"] = ["network", "failure"]
    (copy / "meta.json").write_text(json.dumps(meta))
    for name in drop:
        (copy / f"{name}.parquet").unlink()
    return copy


@pytest.fixture(scope="module")
def failure_page(tiny_results: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    copy = with_failure(tiny_results, tmp_path_factory.mktemp("failure") / "results")
    return render_report(copy).read_text(encoding="utf-8")


def test_failure_sections_say_how_to_measure_them_when_the_run_did_not(page: str) -> None:
    for section_id in FAILURE_SECTIONS:
        body = section(page, section_id)
        assert "Not measured in this run" in body, section_id
        assert FAILURE_COMMAND in body, section_id
    for name in ("blast radius (mean", "anomalies the audit found", "until every invariant held"):
        assert "not measured in this run" in verdict_row(page, name)
        assert FAILURE_COMMAND in verdict_row(page, name)


def test_heatmap_and_timelines_show_every_fault_and_topology(failure_page: str) -> None:
    heatmap = section(failure_page, "failure-heatmap")
    assert heatmap.count("<svg") == 1
    for label in ("kill:payments", "error:payments 50%", "latency:inventory +200 ms", *OPS, *TOPOLOGIES):
        assert f">{label}</text>" in heatmap, label
    # Monolith and colocated lose every operation to a killed process; microservices only user and checkout.
    assert heatmap.count(">0%</text>") == 5 + 5 + 2
    # The latency fault keeps its successes but breaks the SLO: the cell carries its p99.
    assert heatmap.count(">202 ms</text>") == 3 * len(TOPOLOGIES)  # browse, product and checkout
    timeline = section(failure_page, "failure-timeline")
    assert timeline.count("<svg") == 1
    for label in ("kill:payments", "error:payments 50%", "latency:inventory +200 ms"):
        assert label in timeline
    assert "✗ invalid run: colocated" in timeline  # colocated's error run


def test_recovery_table_has_the_numbers_of_the_impact_table(failure_page: str) -> None:
    recovery = section(failure_page, "recovery")
    impact = failure_tables(QUICK)["failure_impact"]
    for row in impact.itertuples():
        html_row = row_of(failure_page, f"fault-{row.topology}-{str(row.fault).replace(':', '_')}")
        assert f"<td>{row.blast_radius:.0%}</td>" in html_row
        assert html_row in recovery
    kill = row_of(failure_page, "fault-microservices-kill_payments")
    assert "<td>30%</td>" in kill  # user (15) + checkout (15) of the default mix
    assert '>user 0%</span>, <span class="nw">checkout 0%</span>' in kill
    assert ">500 ms</span>" in kill  # its restart
    assert ">browse p99 202 ms</span>" in row_of(failure_page, "fault-monolith-latency_inventory")
    invalid = row_of(failure_page, "fault-colocated-error_payments")
    assert 'class="invalid"' in invalid
    assert "INVALID" in invalid
    assert "(planted)" in invalid


def test_verdict_failure_rows_come_from_the_fault_runs(failure_page: str) -> None:
    radius = failure_tables(QUICK)["failure_impact"].pivot(index="topology", columns="fault", values="blast_radius")
    # Each fault hurts what it should (weights of the default mix: browse 30, product 30, user 15, checkout 15, ...).
    assert radius.loc["monolith"].to_dict() == pytest.approx(
        {"kill:payments": 1.0, "error:payments": 0.15, "latency:inventory": 0.75}
    )
    assert radius.loc["microservices", "kill:payments"] == pytest.approx(0.30)
    worst = verdict_row(failure_page, "blast radius: share")
    assert '<span class="v">100% (kill:payments)</span>' in worst
    assert '<span class="v">75% (latency:inventory)</span>' in worst  # microservices: a latency fault is worse
    mean = verdict_row(failure_page, "blast radius (mean")
    for topology in TOPOLOGIES:
        assert f'<span class="v">{radius.loc[topology].mean():.0%} over 3 faults</span>' in mean
    # Colocated's mean includes its invalid error run: flagged, linking to that run's row.
    assert 'class="flag" href="#fault-colocated-error_payments"' in mean
    recover = verdict_row(failure_page, "time to recover")
    assert recover.count('<span class="v">0 s (every fault)</span>') == len(TOPOLOGIES)
    restart = verdict_row(failure_page, "restart of a killed process")
    assert '<span class="v">250 ms (kill:payments)</span>' in restart
    assert '<span class="v">500 ms (kill:payments)</span>' in restart
    anomalies = verdict_row(failure_page, "anomalies the audit found")
    assert anomalies.count('<span class="v">none in 3 audits</span>') == len(TOPOLOGIES)
    # A count that must be 0 has no ratio to the monolith.
    assert "vs monolith" not in anomalies
    assert "baseline" not in anomalies
    convergence = verdict_row(failure_page, "until every invariant held")
    assert '<span class="v">504 ms (latency:inventory)</span>' in convergence
    assert "ANOMALY" not in failure_page


def test_consistency_table_lists_every_audit_and_invariant(failure_page: str) -> None:
    consistency = section(failure_page, "consistency")
    assert "Every invariant held after all 9 fault runs" in consistency
    for name in CHECKS:
        assert f"<code>{name}</code>" in consistency
        assert name in INVARIANTS  # every invariant the audit checks is explained
    row = row_of(failure_page, "audit-colocated-latency_inventory")
    for cell in ("<td class=l>consistent</td>", "<td>504 ms</td>", "<td>37</td>", "<td>7</td>", "<td>0</td>"):
        assert cell in row


def test_an_anomaly_is_shown_prominently(tiny_results: Path, tmp_path: Path) -> None:
    copy = with_failure(tiny_results, tmp_path / "anomaly", anomaly=("microservices", "kill:payments"))
    page = render_report(copy).read_text(encoding="utf-8")
    # At the top of the page, before the verdict.
    top = page[: page.find('<section id="verdict">')]
    assert '<div class="alarm-box"><b>⚠ The consistency audit found anomalies after 1 fault run</b>' in top
    assert 'href="#audit-microservices-kill_payments"' in top
    # In the verdict: the count, the broken invariant, and an alarm linking to the audit.
    anomalies = verdict_row(page, "anomalies the audit found")
    assert '<span class="v">2 in 1 of 3 audits: wallet_balances</span>' in anomalies
    assert '<a class="alarm" href="#audit-microservices-kill_payments"' in anomalies
    assert "never within the 30 s allowed (1 of 3 audits)" in verdict_row(page, "until every invariant held")
    # In the section: a box above the table, the row marked, the invariant counted.
    consistency = section(page, "consistency")
    assert consistency.index('class="alarm-box"') < consistency.index("<table")
    row = row_of(page, "audit-microservices-kill_payments")
    assert 'class="anomaly"' in row
    for needle in ("ANOMALIES", "wallet_balances: 2", "never (within 30 s)"):
        assert needle in row
    assert '<span class="alarm">2</span>' in consistency


def test_a_run_of_the_failure_experiment_alone(tiny_results: Path, tmp_path: Path) -> None:
    copy = with_failure(tiny_results, tmp_path / "failure-only")
    for path in copy.glob("*.parquet"):
        if path.stem not in ("failure_timeline", "failure_impact", "consistency"):
            path.unlink()
    meta = json.loads((copy / "meta.json").read_text())
    meta["parameters"]["topologies"] = []  # the topologies come from the tables
    meta["parameters"]["experiments"] = ["failure"]
    (copy / "meta.json").write_text(json.dumps(meta))
    page = render_report(copy).read_text(encoding="utf-8")
    for topology in TOPOLOGIES:
        assert f"</span>{topology}</th>" in section(page, "verdict")
        row_of(page, f"fault-{topology}-kill_payments")
    assert "Not measured in this run" in section(page, "spectrum")
    assert "Not measured in this run" not in section(page, "recovery")
    assert "Parameters of the failure experiment" in page
    assert "Parameters of the network experiment" not in page


def test_partial_failure_tables_render_what_they_have(tiny_results: Path, tmp_path: Path) -> None:
    copy = with_failure(tiny_results, tmp_path / "partial-failure", drop=("failure_timeline", "consistency"))
    page = render_report(copy).read_text(encoding="utf-8")
    assert FAILURE_COMMAND in section(page, "failure-timeline")
    assert FAILURE_COMMAND in section(page, "consistency")
    assert "<svg" in section(page, "failure-heatmap")
    assert "not measured in this run" in verdict_row(page, "anomalies the audit found")


def test_displayed_figures_never_flatter() -> None:
    assert [availability_text(v) for v in (1.0, 0.99961, 0.99, 0.98999, 0.456, 0.0, math.nan)] == [
        "100%",
        "99.9%",
        "99.0%",
        "98%",
        "45%",
        "0%",
        "—",
    ]
    # The experiment's time to detect is the start of the first unhealthy whole second: shown as the span it bounds.
    assert [detect_text(v) for v in (-0.5, 0.0, 2.0, math.nan)] == [
        "≤ 0.5 s",
        "≤ 1 s",
        "2 – 3 s",
        "no unhealthy second",
    ]
    assert [recover_text(v) for v in (0.0, 1.0, 2.5)] == ["0 s", "≤ 1 s", "≤ 2.5 s"]

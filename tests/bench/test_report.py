"""The report renders from a results directory alone: one self-contained HTML file, every section, the numbers of
the results files, invalid runs marked, and no deployment imported."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.report import ms, render_report
from bench.results import load_results
from plumbing.topology import TOPOLOGIES

pytestmark = pytest.mark.sockets  # the tiny_results fixture runs every topology for real

HEADINGS = (
    "Verdict",
    "Latency percentile spectrum",
    "Latency against offered load",
    "CPU per request and memory",
    "Where the time goes",
    "Decomposition",
    "Method and environment",
)
# Rendering must not bring in the code it measures, nor the harness that ran it.
FORBIDDEN = (
    "monolith",
    "microservices",
    "shop",
    "plumbing",
    "bench.deploy",
    "bench.network",
    "bench.run",
    "bench.supervisor",
    "bench.loadgen",
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
    assert "runs are invalid" in flipped  # the banner at the top


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
    blast = verdict[verdict.find("blast radius") :]
    blast = blast[: blast.find("</tr>")]
    assert '<span class="v">100% over 2 faults</span>' in blast
    assert '<span class="v">75% over 2 faults</span>' in blast
    assert "×0.75 vs monolith" in blast
    # The consistency audit is another table: still not measured, with its command.
    consistency = verdict[verdict.find("audits after a fault") :]
    assert consistency.find("not measured in this run") < consistency.find("</tr>")
    assert "archbench run --experiments failure" in consistency

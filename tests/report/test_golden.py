"""The golden results directory (a real quick run of every experiment, made before the report was reshaped) renders
the same verdict as it did then, and the whole page renders from it, self-contained, without a deployment."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import render_report
from bench.report.sections import SECTIONS
from tests.report.views import context, verdict

NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?")
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


def numbers(text: str) -> list[float]:
    return [float(n.replace(",", "").replace("−", "-")) for n in NUMBER.findall(text)]


@pytest.fixture(scope="module")
def before(golden: Path) -> dict:
    return json.loads((golden / "verdict-before.json").read_text())


@pytest.fixture(scope="module")
def page(golden: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = render_report(golden, tmp_path_factory.mktemp("golden") / "report.html")
    return out.read_text(encoding="utf-8")


def test_every_verdict_cell_has_the_numbers_it_had(golden: Path, before: dict) -> None:
    now = verdict(context(golden))
    assert list(now.topologies) == before["topologies"]
    assert [(r.aspect, r.name) for r in now.rows] == [(r["aspect"], r["name"]) for r in before["rows"]]
    for row, was in zip(now.rows, before["rows"], strict=True):
        if was["cells"] is None:
            assert row.figures is None, row.name
            assert row.command in was["not_measured"], row.name
            continue
        assert row.figures is not None, row.name
        for topology, cell in was["cells"].items():
            figure = row.figures[topology]
            if cell is None:
                assert figure is None, (row.name, topology)
                continue
            assert figure is not None, (row.name, topology)
            assert numbers(figure.cell.text) + numbers(figure.ratio) == cell["numbers"], (row.name, topology)
            assert figure.cell.text == cell["text"], (row.name, topology)
            marks = [f"flag:{a}" for a in dict.fromkeys(figure.cell.invalid)][:1]
            marks = [f"alarm:{a}" for a in figure.cell.alarm][:1] + marks
            assert marks == cell["marks"], (row.name, topology)


def test_the_headline_has_the_numbers_it_had(golden: Path, before: dict) -> None:
    now = verdict(context(golden))
    assert [h.name for h in now.headline] == [h["name"] for h in before["headline"]]
    for item, was in zip(now.headline, before["headline"], strict=True):
        figures = {t: cell.text for t, cell in item.figures}
        assert {t: numbers(v) for t, v in figures.items()} == {t: f["numbers"] for t, f in was["figures"].items()}


def test_the_page_is_self_contained(page: str) -> None:
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
    assert page.count("<svg") >= 9
    assert len(page) < 2_000_000
    # Every link inside the page has its target.
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert {ref[1:] for ref in re.findall(r'href="(#[^"]*)"', page)} <= ids


def test_every_section_in_order(page: str) -> None:
    positions = [page.find(f'<section id="{s.id}"><h2>{s.title}</h2>') for s in SECTIONS]
    assert all(p >= 0 for p in positions), [s.id for s, p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert "Not measured in this run" not in page  # the golden run made every experiment the page shows
    assert page.count(".t-monolith{color:") == 1  # the stylesheet, inlined once


def test_rendering_does_not_import_the_deployments(golden: Path, tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from bench.report import render_report\n"
        f"render_report(Path({str(golden)!r}), Path({str(tmp_path / 'r.html')!r}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, check=True)
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    imported = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert imported == []
    assert "bench.report" in modules
    assert (tmp_path / "r.html").is_file()


def test_every_section_has_its_template_and_a_command() -> None:
    templates = Path(__file__).parents[2] / "bench" / "report" / "templates" / "sections"
    for section in SECTIONS:
        assert (templates / section.template).is_file(), section.id
        assert section.command.startswith("archbench run"), section.id
    assert len({s.id for s in SECTIONS}) == len(SECTIONS)

"""``archbench run --target/--targets``: the experiments against a shop deployed apart, over real sockets.

The shop is started here by ``bench.system.deploy`` (as compose or Kubernetes would elsewhere) and the run gets only its
URLs and, through the environment, its credentials: nothing is started by the run, dependency faults go through the
admin URLs, and what cannot be done on a target (process faults, CPU and memory, traces, the audit) is a note.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cli import main
from bench.experiments import soak
from bench.experiments.soak import SoakParams
from bench.report.results import load_results
from bench.system.deploy import Deployment, deploy
from bench.system.faults import admin_faults
from bench.system.supervisor import free_port
from bench.system.target import TargetSpec, connect, load_targets
from shop.seed import SeedSpec
from tests.bench.contexts import silent, small_context

pytestmark = pytest.mark.sockets

TOKEN = "target-test-admin-token"
SEED = SeedSpec(seed=3, products=60, users=20)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The deployed system: microservices with their fault endpoints on, running for the whole module."""
    run_dir = tmp_path_factory.mktemp("deployed") / "microservices"
    with deploy("microservices", run_dir, seed=SEED, admin_token=TOKEN, call_timeout=0.5) as deployment:
        yield deployment


@pytest.fixture
def credentials(shop: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shop.api_key
    monkeypatch.setenv("ARCHBENCH_API_KEY", shop.api_key)
    monkeypatch.setenv("ARCHBENCH_ADMIN_TOKEN", TOKEN)


def targets_file(path: Path, shop: Deployment, admin: dict[str, str] | None = None) -> Path:
    """A targets file for ``shop``, with the admin URL of every process unless ``admin`` says otherwise."""
    urls = admin if admin is not None else {name: shop.admin_url(name) for name in shop.process_names()}
    lines = [
        'topology = "microservices"',
        f'public_url = "{shop.public_url}"',
        f"products = {SEED.products}",
        f"users = {SEED.users}",
        "[admin]",
        *(f'{name} = "{url}"' for name, url in urls.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("archbench: error: ")
    return err.strip()


def test_a_run_on_the_target_measures_latency_injects_dependency_faults_and_notes_what_it_skips(
    shop: Deployment, credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    argv = ["run", "--targets", str(targets_file(tmp_path / "targets.toml", shop)), "--quick", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "nothing is started here" in " ".join(printed.err.split())  # rich wraps at the terminal's width
    assert "not measured on the external target" in printed.out
    assert (out / "report.html").is_file()
    assert not (out / "runs").exists()  # nothing was deployed by the run

    results = load_results(out)
    assert results.meta["parameters"]["topologies"] == ["microservices"]
    assert results.meta["parameters"]["target"]["public_url"] == shop.public_url
    meta_text = (out / "meta.json").read_text()
    assert shop.api_key
    assert shop.api_key not in meta_text
    assert TOKEN not in meta_text

    # Network: latencies measured end to end; CPU and memory not measured (NaN, not zero); no traced phase.
    steps = results.table("steps")
    assert set(steps["phase"]) == {"low", "sweep", "knee"}  # no traced phase: the span files are elsewhere
    low = steps[steps["phase"] == "low"].iloc[0]
    assert 0 < low["p50"] <= low["p99"] < 1.0
    assert low["successes_in_window"] > 0
    assert steps["cpu_per_request_us"].isna().all()
    assert steps["peak_rss_bytes"].isna().all()
    assert results.table("resources").empty
    assert results.table("traces").empty

    # Failure: the kill is skipped, the error rate set through payments' admin URL hurts checkouts only.
    impact = results.table("failure_impact").set_index("fault").to_dict(orient="index")
    assert list(impact) == ["error:payments"]
    assert impact["error:payments"]["availability_checkout"] < 0.9
    assert impact["error:payments"]["availability_browse"] == 1.0
    assert results.table("consistency").empty  # the target's databases are not read
    assert admin_faults(shop.admin_url("payments"), TOKEN, "GET") == {}  # the fault was lifted

    notes = results.table("notes")
    by_subject = dict(zip(notes["experiment"] + "/" + notes["subject"], notes["note"], strict=True))
    assert "process fault" in by_subject["failure/kill:payments"]
    assert "not audited" in by_subject["failure/consistency"]
    assert "skipped" in by_subject["network/traced"]
    assert "not measured" in by_subject["network/resources"]


def test_a_public_url_alone_skips_the_faults_of_processes_without_an_admin_url(
    shop: Deployment, credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    argv = ["run", "--target", shop.public_url, "--topologies", "microservices", "--experiments", "failure"]
    assert main([*argv, "--quick", "--out", str(out), "--no-report"]) == 0
    notes = load_results(out).table("notes").set_index("subject")["note"].to_dict()
    assert "no admin URL for process payments" in notes["error:payments"]
    assert load_results(out).table("failure_impact").empty


def test_an_unreachable_target_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["run", "--target", url, "--topologies", "monolith", "--experiments", "network"]) == 2
    assert one_line_error(capsys) == f"archbench: error: cannot reach {url}: connection refused"


def test_an_unreachable_admin_url_is_one_line_and_exit_2(
    shop: Deployment, credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    path = targets_file(tmp_path / "targets.toml", shop, {"payments": dead})
    assert main(["run", "--targets", str(path), "--experiments", "failure"]) == 2
    assert one_line_error(capsys) == f"archbench: error: cannot reach {dead} (admin of payments): connection refused"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('topology = "microservices"\n', "key 'public_url' is missing"),
        ('topology = "microservices"\npublic_url = "http://h:1"\npubic = 1\n', "unknown key 'pubic'"),
        ('topology = "cluster"\npublic_url = "http://h:1"\n', "key 'topology': 'cluster' is not one of"),
        ('topology = "monolith"\npublic_url = "https://h/x"\n', "key 'public_url': 'https://h/x' is not an http"),
        ('topology = "monolith"\npublic_url = "http://h:1"\nusers = "many"\n', "key 'users': expected int"),
        ('topology = "monolith"\npublic_url = "http://h:1"\n[admin]\npayments = "http://h:2"\n', "'admin.payments'"),
        ("topology = \n", "not valid TOML"),
    ],
)
def test_a_bad_targets_file_is_one_line_naming_the_key(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(content)
    assert main(["run", "--targets", str(path)]) == 2
    error = one_line_error(capsys)
    assert error.startswith(f"archbench: error: targets file {path}: ")
    assert message in error


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "http://h:1"], "--target needs the topology deployed there"),
        (["--target", "http://h:1", "--topologies", "monolith,microservices"], "give one topology"),
        (["--target", "http://h:1", "--topologies", "monolith", "--experiments", "security"], "security experiment"),
        (["--target", "http://h:1", "--topologies", "monolith", "--profiles", "resilient"], "--profiles does not"),
        (["--target", "ftp://h", "--topologies", "monolith"], "--target: 'ftp://h' is not an http://host[:port] URL"),
    ],
)
def test_what_a_target_cannot_do_is_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *argv]) == 2
    assert message in one_line_error(capsys)


def test_wrong_credentials_are_refused_before_anything_runs(
    shop: Deployment, credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--target", shop.public_url, "--topologies", "microservices"]
    monkeypatch.setenv("ARCHBENCH_API_KEY", "not-the-key")
    assert main(argv) == 2
    assert "refused the public API with the API key in $ARCHBENCH_API_KEY" in one_line_error(capsys)
    assert shop.api_key
    monkeypatch.setenv("ARCHBENCH_API_KEY", shop.api_key)
    monkeypatch.setenv("ARCHBENCH_ADMIN_TOKEN", "not-the-token")
    assert main(argv) == 2
    assert "refused the admin token in $ARCHBENCH_ADMIN_TOKEN" in one_line_error(capsys)
    monkeypatch.delenv("ARCHBENCH_ADMIN_TOKEN")
    assert main(argv) == 2
    assert "the failure experiment needs the admin token" in one_line_error(capsys)


def test_the_targets_file_in_toml_or_json_and_the_example_in_deploy(tmp_path: Path) -> None:
    raw = {"topology": "monolith", "public_url": "http://127.0.0.1:9000/", "profile": "resilient"}
    path = tmp_path / "targets.json"
    path.write_text(json.dumps(raw))
    spec = load_targets(path)
    assert spec == TargetSpec("monolith", "http://127.0.0.1:9000/", profile="resilient")
    assert spec.admin_url("monolith") == "http://127.0.0.1:9000"  # the public process: its public URL
    example = load_targets(REPO / "deploy" / "targets.example.toml")
    assert example.public_url == "http://127.0.0.1:8000"  # the gateway's port in deploy/compose/microservices.yaml
    assert example.known_admin_urls() == {"gateway": "http://127.0.0.1:8000"}
    assert (example.products, example.users) == (1000, 200)  # ARCHBENCH_PRODUCTS and ARCHBENCH_USERS there


def test_a_soak_on_the_target_records_latency_over_time_and_notes_the_memory_it_cannot_see(
    shop: Deployment, credentials: None, tmp_path: Path
) -> None:
    target = connect(TargetSpec.from_url(shop.public_url, "microservices"), faults=False)
    params = SoakParams(duration=2.0, warmup=0.5, sample_interval=0.5, rate=50.0)
    context = small_context(tmp_path, ["microservices"], sut_cpus=None, stack="raw", target=target)
    tables = soak.EXPERIMENT.run(context, params, silent)
    assert "soak" not in tables  # no process of the target is visible from here
    load = tables["soak_load"]
    assert load["requests"].sum() >= 0.9 * 50.0 * 2.5
    assert (tables["notes"]["experiment"] == "soak").all()

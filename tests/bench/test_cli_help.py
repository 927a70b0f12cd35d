"""The command line: every page of ``archbench --help`` reads in an 80-column terminal, and a bad --out is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.system.deploy import DB_ENV, DB_URL_ENV


@pytest.mark.parametrize("command", [[], ["run"], ["serve"], ["report"]])
def test_help_fits_80_columns(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    page = capsys.readouterr().out
    assert "usage: archbench" in page
    assert [line for line in page.splitlines() if len(line) > 80] == []


def test_an_out_that_cannot_take_the_results_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "kept").write_text("x")
    for out, why in ((afile, "is a file"), (afile / "sub", "is a file"), (full, "is not empty")):
        assert main(["run", "--out", str(out), "--no-report"]) == 2
        err = capsys.readouterr().err
        assert why in err
        assert err.count("\n") == 1  # one line, no traceback
    assert (full / "kept").read_text() == "x"  # nothing lost


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--db-servers", "per-service"], "add --db postgres"),
        (["--db", "sqlite", "--db-url", "postgresql://shop@127.0.0.1:5432/shop_{component}"], "--db sqlite"),
        (
            ["--db", "postgres", "--db-servers", "per-service", "--db-url", "postgresql://shop@127.0.0.1/shop"],
            "--db-url",
        ),
    ],
)
@pytest.mark.parametrize("command", [["run", "--no-report"], ["serve", "monolith"]])
def test_database_options_that_contradict_each_other_are_refused(
    command: list[str], args: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, *args]) == 2
    err = capsys.readouterr().err
    assert why in err
    assert err.count("\n") == 1


def test_a_run_refused_before_it_starts_leaves_no_results_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command hands --db-url to its deployments through the environment: restored for the tests after this one.
    monkeypatch.setenv(DB_URL_ENV, "")
    monkeypatch.setenv(DB_ENV, "")
    refused = tmp_path / "refused"
    # Scaling to 2 replicas on the one CPU given to the system under test is refused before anything runs.
    argv = ["run", "--out", str(refused), "--sut-cpus", "0", "--generator-cpus", "0", "--experiments", "scaling"]
    assert main([*argv, "--scale-to", "2", "--no-report"]) == 2
    assert "scaling" in capsys.readouterr().err
    assert not refused.exists()
    unreachable = tmp_path / "unreachable"  # a database server that cannot be reached: found when the run starts
    argv = ["run", "--out", str(unreachable), "--topologies", "monolith", "--experiments", "network", "--no-report"]
    assert main([*argv, "--db-url", "postgresql://shop@127.0.0.1:1/shop_{component}"]) == 2
    err = capsys.readouterr().err  # the progress bar, then one line
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("archbench: error: monolith's database")
    assert not unreachable.exists()

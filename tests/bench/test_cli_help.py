"""Every page of ``archbench --help`` reads in an 80-column terminal."""

from __future__ import annotations

import pytest

from bench.cli import main


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

"""Reading a rendered report in tests: one section, one verdict row."""

from __future__ import annotations

import re


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">.*?</section>', page, re.DOTALL)
    assert match, section_id
    return match.group(0)


def verdict_row(page: str, name: str) -> str:
    verdict = section(page, "verdict")
    row = verdict[verdict.find(name) :]
    return row[: row.find("</tr>")]

"""The consistency section and its verdict rows: every audit and invariant, and an anomaly shown prominently."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common.names import INVARIANTS
from bench.report.context import Context
from bench.report.render import banner
from bench.system.audit import CHECKS
from plumbing.topology import TOPOLOGIES
from tests.report.failures import with_failure
from tests.report.views import cells, context, texts, verdict, view


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    return context(with_failure(tmp_path_factory.mktemp("failure") / "results"))


def test_consistency_table_lists_every_audit_and_invariant(ctx: Context) -> None:
    consistency = view(ctx, "consistency")
    assert (consistency.runs, consistency.failed) == (9, ())
    assert consistency.slowest == "504 ms"
    invariants = consistency.invariants
    assert [r.text(0) for r in invariants.rows] == list(CHECKS)
    for name in CHECKS:
        assert name in INVARIANTS  # every invariant the audit checks is explained
    assert all(r.text(2) == "0 in 3" for r in invariants.rows)
    row = consistency.audits.row("audit-colocated-latency_inventory")
    assert [row.text(i) for i in range(2, 8)] == ["consistent", "none", "504 ms", "37", "7", "0"]
    rows = verdict(ctx)
    anomalies = rows.row("anomalies the audit found")
    assert list(texts(anomalies).values()) == ["none in 3 audits"] * len(TOPOLOGIES)
    # A count that must be 0 has no ratio to the monolith.
    assert anomalies.figures is not None
    assert all(f is not None and f.ratio == "" for f in anomalies.figures.values())
    assert texts(rows.row("from the end of the load until every"))["monolith"] == "504 ms (latency:inventory)"
    assert banner(ctx).anomalies == 0


def test_an_anomaly_is_shown_prominently(tmp_path: Path) -> None:
    ctx = context(with_failure(tmp_path / "anomaly", anomaly=("microservices", "kill:payments")))
    # At the top of the page.
    top = banner(ctx)
    assert (top.anomalies, top.anomaly_topologies, top.first_anomaly) == (
        1,
        "microservices",
        "audit-microservices-kill_payments",
    )
    # In the verdict: the count, the broken invariant, and an alarm linking to the audit.
    rows = verdict(ctx)
    found = cells(rows.row("anomalies the audit found"))["microservices"]
    assert found.text == "2 in 1 of 3 audits: wallet_balances"
    assert found.alarm == ("audit-microservices-kill_payments",)
    late = cells(rows.row("from the end of the load until every"))["microservices"]
    assert late.text == "never within the 30 s allowed (1 of 3 audits)"
    assert late.alarm == ("audit-microservices-kill_payments",)
    # In the section: a box above the table, the row marked, the invariant counted.
    consistency = view(ctx, "consistency")
    assert [(f.topology, f.fault, f.anchor) for f in consistency.failed] == [
        ("microservices", "kill:payments", "audit-microservices-kill_payments")
    ]
    row = consistency.audits.row("audit-microservices-kill_payments")
    assert row.css == "anomaly"
    assert [row.text(i) for i in (2, 3, 4)] == ["⚠ ANOMALIES", "wallet_balances: 2", "never (within 30 s)"]
    wallet = next(r for r in consistency.invariants.rows if r.text(0) == "wallet_balances")
    assert wallet.css == "anomaly"
    assert [s.kind for s in wallet.cells[4]] == ["alarm"]
    assert wallet.text(4) == "2"

"""Names and thresholds that the experiments write and the report reads, defined once.

A leaf module: it imports nothing from ``bench``, so the report can use it without importing the harness.
"""

from __future__ import annotations

from typing import Final

#: The latency percentiles every summary reports, by name and rank, beside "max".
PERCENTILES: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99))

#: Error classes as the generator records them; "" means a response below 400.
ERROR_CLASSES: Final = ("", "refused", "reset", "timeout", "4xx", "5xx")
#: The error classes that count: every class but "".
ERRORS: Final = ERROR_CLASSES[1:]
#: Error classes that a user sees as a failure (a 4xx is the shop answering, e.g. out of stock).
FAILURES: Final = ("refused", "reset", "timeout", "5xx")

#: An operation under this success ratio during a fault window counts in the fault's blast radius.
HEALTHY_SUCCESS: Final = 0.99

#: The request mixes the scaling experiment measures, in the order the report shows them.
SCALING_MIXES: Final = ("browse-heavy", "checkout-heavy")

#: The restart scenarios of the deployment experiment, in the order the report shows them.
RESTART_SCENARIOS: Final = ("monolith-1", "monolith-n", "single", "rolling")

#: The invariants of the consistency audit, by name, in the reader's words.
INVARIANTS: Final[dict[str, str]] = {
    "stock_conserved": "stock is conserved: initial = on hand + held + sold, per product",
    "confirmed_order_charged_once": "every confirmed order has exactly one charge, of its total",
    "confirmed_order_stock_committed": "every confirmed order has a committed reservation",
    "no_charge_without_confirmed_order": "no charge survives without a confirmed order (refunds settled)",
    "no_stock_held_by_rejected_order": "no stock is held by a rejected order",
    "wallet_balances": "wallet = deposits − charges + refunds, per user",
    "deposit_credited_once": "a deposit's idempotency key credits once: one deposit per user and key",
    "notification_delivered_once": "every confirmed order's notification is delivered exactly once",
    "no_pending_orders": "settled: no order is still pending",
}

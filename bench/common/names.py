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

# -- tables of a results directory (one Parquet file each), by the experiment that writes them ---------------------

#: network: every request, one summary row per load run, CPU and memory per process and run, latency per operation.
REQUESTS: Final = "requests"
STEPS: Final = "steps"
RESOURCES: Final = "resources"
PER_OPERATION: Final = "ops"
#: network: the knee per topology and round (the bracket's probes and the crossing estimated from them), and every
#: headline figure as a median over rounds with its interval and its ratio to the monolith, paired per round.
KNEE: Final = "knee"
ESTIMATES: Final = "estimates"
#: network: the per-hop breakdown of traced requests.
TRACES: Final = "traces"
HOPS: Final = "hops"
SPANS: Final = "spans"
#: failure: per second and operation around each fault, one row per fault run, the audit after each.
FAILURE_TIMELINE: Final = "failure_timeline"
FAILURE_IMPACT: Final = "failure_impact"
CONSISTENCY: Final = "consistency"
#: security: one row per topology and setting of the access checks.
SECURITY: Final = "security"
#: soak: samples per process, growth per process, latency over time.
SOAK: Final = "soak"
SOAK_SUMMARY: Final = "soak_summary"
SOAK_LOAD: Final = "soak_load"
#: scaling: one row per step, per run of the search, per process of the best run, and the fitted model.
SCALING: Final = "scaling"
SCALING_STEPS: Final = "scaling_steps"
SCALING_PROCESSES: Final = "scaling_processes"
SCALING_MODEL: Final = "scaling_model"
#: deployment: one row per restart scenario, its timeline in bins, its stop/start/ready events.
DEPLOYMENT: Final = "deployment"
DEPLOYMENT_TIMELINE: Final = "deployment_timeline"
DEPLOYMENT_EVENTS: Final = "deployment_events"
#: What an experiment could not measure on an external target, and why.
NOTES: Final = "notes"
#: Counted from the sources and deploy/ (codebase, complexity) and from the running processes (merged in).
CODEBASE: Final = "codebase"
COMPLEXITY: Final = "complexity"
COMPLEXITY_LIVE: Final = "complexity_live"

#: Where each component ran: one row per topology and component, written by every experiment that deployed the
#: topology on this machine (not for an external target).
PLACEMENT: Final = "placement"
#: The component (monolith, gateway or a service), the process that hosted it (its first replica when it had
#: several) and the file name of its database ("" when it has none, as the gateway).
PLACEMENT_COMPONENT: Final = "component"
PLACEMENT_PROCESS: Final = "process"
PLACEMENT_DATABASE: Final = "database"
PLACEMENT_COLUMNS: Final = ("topology", PLACEMENT_COMPONENT, PLACEMENT_PROCESS, PLACEMENT_DATABASE)

#: The kinds of fault the failure experiment applies: process faults (kill, pause) and dependency faults.
FAULT_KINDS: Final = ("kill", "pause", "latency", "error", "hang")
#: Columns of failure_impact and failure_timeline: the fault's kind, the component it hit (the process hit is the
#: one placement gives for that component), and the window in which it was in force, as applied, in seconds on the
#: load's clock (the clock of ``failure_timeline.second`` and of the requests' intended send times).
FAULT_KIND: Final = "fault_kind"
FAULT_TARGET: Final = "fault_target"
WINDOW_START: Final = "window_start"
WINDOW_END: Final = "window_end"

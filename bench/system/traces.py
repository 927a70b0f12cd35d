"""The per-hop breakdown: where the time of a traced request goes, from the spans every process recorded.

Pure functions over DataFrames; reading the span files is the only I/O (``load_spans``). See ``plumbing/tracing.py``
for what a span is. For each traced request (one trace) this yields:

* ``internal_calls``: client spans (calls between components);
* ``wire_bytes``: request and reply bodies of those calls;
* time in each component: its server spans minus the time it spent waiting on its own calls;
* of that, time in the database: what its server spans spent in database calls (``db_us``: statements, fetches,
  commits and the wait for the write lock); 0 for a component that keeps no data (the gateway);
* time between components: for each call, the caller's wait minus the callee's server span (serialization,
  transport, queueing at both ends).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pandas as pd

from plumbing.tracing import Span

SPAN_COLUMNS = list(Span.__struct_fields__)


def load_spans(spans_dir: Path) -> list[Span]:
    """Every span recorded under ``spans_dir`` (``*.jsonl``)."""
    decoder = msgspec.json.Decoder(Span)
    return [
        decoder.decode(line)
        for path in sorted(spans_dir.glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]


def spans_frame(spans: list[Span]) -> pd.DataFrame:
    return pd.DataFrame([msgspec.structs.asdict(s) for s in spans], columns=SPAN_COLUMNS)


def _union_us(intervals: list[tuple[int, int]]) -> int:
    """Total length covered by ``(start, end)`` intervals (concurrent calls are counted once)."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def breakdown(trace: list[Span]) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Summary figures and the hop list of one trace (all its spans).

    Returns ``(summary, hops)``: the summary has ``entry_us`` (root server span), ``internal_calls``,
    ``wire_bytes``, ``between_us`` (sum over calls), ``in_<component>_us`` and, part of it, ``db_<component>_us``;
    each hop is one call with caller, callee, name, start offset, caller wait, callee time and the callee's time in
    the database, for the waterfall.
    """
    server = [s for s in trace if s.kind == "server"]
    client = [s for s in trace if s.kind == "client"]
    ids = {s.span_id for s in trace}
    roots = [s for s in server if s.parent_id not in ids]
    if not roots:
        raise ValueError("trace has no root server span")
    root = roots[0]
    callee_of = {s.parent_id: s for s in server}
    summary: dict[str, float] = {
        "entry_us": float(root.duration_us),
        "internal_calls": float(len(client)),
        "wire_bytes": float(sum(c.bytes_in + c.bytes_out for c in client)),
        "between_us": 0.0,
    }
    for span in server:
        waited = _union_us([(c.start_us, c.start_us + c.duration_us) for c in client if c.parent_id == span.span_id])
        key = f"in_{span.app}_us"
        summary[key] = summary.get(key, 0.0) + float(span.duration_us - waited)
        db_key = f"db_{span.app}_us"
        summary[db_key] = summary.get(db_key, 0.0) + float(span.db_us)
    hops: list[dict[str, object]] = []
    for call in sorted(client, key=lambda c: c.start_us):
        callee = callee_of.get(call.span_id)
        callee_us = float(callee.duration_us) if callee is not None else float("nan")
        if callee is not None:
            summary["between_us"] += float(call.duration_us) - callee_us
        hops.append(
            {
                "caller": call.app,
                "callee": callee.app if callee is not None else "?",
                "name": callee.name if callee is not None else call.name,
                "offset_us": float(call.start_us - root.start_us),
                "wait_us": float(call.duration_us),
                "callee_us": callee_us,
                "callee_db_us": float(callee.db_us) if callee is not None else float("nan"),
                "bytes": call.bytes_in + call.bytes_out,
            }
        )
    return summary, hops


def summarize(spans: list[Span], traced: list[tuple[str, str, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-trace figures and per-hop rows for every traced request.

    ``traced`` holds ``(op, trace_id, latency_us)`` per request the harness sent with a trace, the latency as the
    harness saw it; ``client_to_entry_us`` is what the harness waited beyond the entry process's own span.
    """
    by_trace: dict[str, list[Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    rows: list[dict[str, object]] = []
    hop_rows: list[dict[str, object]] = []
    for op, trace_id, latency_us in traced:
        if trace_id not in by_trace:
            continue
        summary, hops = breakdown(by_trace[trace_id])
        summary["client_to_entry_us"] = latency_us - summary["entry_us"]
        rows.append({"op": op, "trace_id": trace_id, "latency_us": latency_us, **summary})
        hop_rows += [{"op": op, "trace_id": trace_id, **hop} for hop in hops]
    return pd.DataFrame(rows), pd.DataFrame(hop_rows)

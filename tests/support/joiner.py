"""For the joiner's tests: feedback and impression records as the collector stores them, an independent recount
of the event log (batch, with every event at hand), and the joiner's counts read back from /metrics."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kfloop.eventlog import read_events
from kfloop.features.synthetic import feedback_record
from serving.joiner.join import Counts


def slate(
    request_id: str, items: list[str], ts: datetime, *, model_version: str | None, variant: str | None
) -> list[dict[str, Any]]:
    """A served slate's impressions, event ids `imp-{request_id}-{position}` as the predictor makes them."""
    served = {"model_version": model_version, "variant": variant}
    named = {k: v for k, v in served.items() if v is not None}
    return [
        feedback_record(
            f"imp-{request_id}-{n}", "impression", "u-1", item, ts, request_id=request_id, position=n, **named
        )
        for n, item in enumerate(items, start=1)
    ]


def feedback(event_id: str, kind: str, item: str | None, ts: datetime, **fields: Any) -> dict[str, Any]:
    return feedback_record(event_id, kind, "u-1", item, ts, **fields)


def recount(log_uri: str, window: timedelta) -> Counts:
    """Count the sealed log from scratch: first copy of each event_id by arrival; a request's decision is its
    earliest impression; feedback is attributed within `window` of it, late after, unattributed without one."""
    rows = read_events(log_uri, deduplicate=False).to_pylist()
    rows.sort(key=lambda r: (r["received_at"], r["event_id"]))
    counts = Counts()
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["event_id"] in first:
            counts.duplicates[row["type"]] += 1
        else:
            first[row["event_id"]] = row
    decision: dict[str, datetime] = {}
    shown: dict[tuple[str, str], tuple[str, str]] = {}
    for row in (r for r in first.values() if r["type"] == "impression"):
        labels = (row["model_version"] or "unknown", row["variant"] or "unknown")
        counts.impressions[labels] += 1
        if row["request_id"] is not None:
            decision[row["request_id"]] = min(decision.get(row["request_id"], row["ts"]), row["ts"])
            shown.setdefault((row["request_id"], row["item_id"]), labels)
            shown.setdefault((row["request_id"], "(first)"), labels)
    for row in (r for r in first.values() if r["type"] != "impression"):
        own = (row["model_version"] or "unknown", row["variant"] or "unknown", row["type"])
        request = row["request_id"]
        if request is None or request not in decision:
            counts.unattributed[(*own, "no_request_id" if request is None else "unknown_request")] += 1
            continue
        labels = shown.get((request, row["item_id"])) or shown[(request, "(first)")]
        if row["ts"] - decision[request] > window:
            counts.late[(*labels, row["type"])] += 1
        else:
            counts.attributed[(*labels, row["type"])] += 1
            counts.dwell_ms[labels] += row["dwell_ms"] or 0
    return counts


def counts_from_metrics(text: str) -> Counts:
    """The joiner's counts as /metrics shows them (zero-valued series left out, as Counter equality ignores them)."""
    counts = Counts()
    by_family = {
        "kfloop_joiner_impressions": counts.impressions,
        "kfloop_joiner_dwell_ms": counts.dwell_ms,
        "kfloop_joiner_feedback": counts.attributed,
        "kfloop_joiner_late_feedback": counts.late,
        "kfloop_joiner_unattributed_feedback": counts.unattributed,
        "kfloop_joiner_duplicate_events": counts.duplicates,
    }
    for family in text_string_to_metric_families(text):
        target: Counter[Any] | None = by_family.get(family.name)
        for sample in family.samples if target is not None else ():
            if sample.name.endswith("_total") and sample.value:
                labels = sample.labels
                key = tuple(labels[n] for n in ("model_version", "variant", "type", "reason") if n in labels)
                target[key[0] if len(key) == 1 else key] += int(sample.value)
    return counts


def metric(text: str, sample_name: str, **labels: str) -> float:
    """One sample's value from /metrics text (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and sample.labels == labels:
                return sample.value
    return 0.0

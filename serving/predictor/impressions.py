"""Served slates become impression events in the event log, derived from the decisions in the audit spool.

A decision is fsynced to the predictor's audit spool before it is answered; its impressions need no second
write: a second cursor of the same spool (`IMPRESSIONS`) reads the decisions back, turns each into one
`impression` event per slot (item, position, the exact propensity, the policy, model version, variant, request
and user, `source: "serving"`) and ships them to the collector's POST /v1/events with the serving token,
retrying until the collector has them. The spool keeps a file until both the audit sink and the collector have
it. Event ids are `imp-{request_id}-{position}`: a resend, or a client's own impression of the slot, is the same
event, and readers of the log prefer the served copy (kfloop.eventlog.copies).

A decision without personalization consent becomes no impression (it is still recorded, saying so); nor does a
shadow's decision (variant `shadow`: mirrored by the router, its slate never shown), which stays in the audit
trail with its propensities.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter

from kfloop.audit.record import DECISION, SHADOW
from kfloop.audit.shipper import SKIPPED, DeliveryFailed, HttpSink, Receipt
from kfloop.audit.spool import decode_payload
from kfloop.events.schema import SERVING

IMPRESSIONS = "impressions"
"""The spool cursor of the impression shipper (its offset file: offset.impressions.json)."""
REJECTED_FILE = "rejected-impressions.jsonl"
"""Decisions whose impressions the collector refused (with its reasons), kept in the spool directory."""
_STORED = ("accepted", "duplicate")
_ACCEPTED = Receipt("accepted")
_CONSENTED = {"personalization": True, "analytics": False}

SLATES_WITHOUT_CONSENT = Counter(
    "kfloop_predictor_slates_without_consent_total",
    "Slates served without personalization consent: explored and audited, not logged as impressions for training.",
    ["variant", "model_version"],
)
IMPRESSIONS_LOGGED = Counter(
    "kfloop_predictor_impressions_logged_total",
    "Served impressions the collector answered for, by status (accepted, duplicate, rejected).",
    ["status"],
)


def impression_id(request_id: str, position: int) -> str:
    """The event id of a served slot: deterministic, so a client can name the same event."""
    return f"imp-{request_id}-{position}"


def impressions_of(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The impression events of a spooled decision (its JSON, as spooled), slot 1 first. None for another kind
    of record, a shadow's decision, or a decision made without personalization consent. A decision recorded
    before decisions carried consent was made with personalization, as every request was then."""
    if record.get("kind") != DECISION or record.get("variant") == SHADOW:  # never served
        return []
    consent = record.get("consent") or _CONSENTED
    if not consent.get("personalization"):
        return []
    shared = {
        "type": "impression",
        "source": SERVING,
        "request_id": record["request_id"],
        "user_id": record.get("user_id"),
        "ts": record["ts"],
        "consent": consent,
        "model_version": record["model_version"],
        "variant": record["variant"],
        "policy": record["policy"]["name"],
    }
    events = []
    for slot in sorted(record["candidates"], key=lambda c: c["position"]):
        event = {
            "event_id": impression_id(record["request_id"], slot["position"]),
            **shared,
            "item_id": slot["item_id"],
            "position": slot["position"],
        }
        if slot.get("propensity") is not None:
            event["propensity"] = slot["propensity"]
        events.append(event)
    return events


def read_token(path: Path) -> str:
    """The collector's serving token from its file (surrounding whitespace ignored). Read for each delivery, so a
    rotated Secret is picked up; a file that is missing or empty fails the delivery, which is retried: the
    impressions wait in the spool, as for a collector that is down."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise DeliveryFailed(f"impressions.token_file {path}: {exc.strerror}") from None
    if not token:
        raise DeliveryFailed(f"impressions.token_file {path} is empty")
    return token


class CollectorDelivery:
    """The impression cursor's `Deliver`: spooled records in, their impressions to the collector, a receipt per
    record back (skipped: it had none; accepted: the collector stored or already had every one of them; else
    the first refusal, with the collector's results for the record's impressions)."""

    def __init__(self, collector_url: str, token_file: Path, *, timeout_s: float) -> None:
        self.collector_url, self.token_file, self.timeout_s = collector_url, token_file, timeout_s

    def post(self, events: list[bytes]) -> list[Receipt]:
        headers = {"Authorization": f"Bearer {read_token(self.token_file)}"}
        sink = HttpSink(
            self.collector_url, timeout_s=self.timeout_s, path="/v1/events", batch_key="events", headers=headers
        )
        return sink(events)

    def __call__(self, payloads: list[bytes]) -> list[Receipt]:
        receipts = [Receipt(SKIPPED)] * len(payloads)
        events: list[bytes] = []
        owners: list[int] = []
        for index, payload in enumerate(payloads):
            record = decode_payload(payload)
            for event in impressions_of(record) if record is not None else []:
                events.append(orjson.dumps(event))
                owners.append(index)
        if not events:
            return receipts
        results: dict[int, list[Receipt]] = {}
        for owner, receipt in zip(owners, self.post(events), strict=True):
            results.setdefault(owner, []).append(receipt)
            IMPRESSIONS_LOGGED.labels(receipt.status if receipt.status in _STORED else "rejected").inc()
        for owner, owned in results.items():
            refused = [r for r in owned if r.status not in _STORED]
            receipts[owner] = Receipt(refused[0].status, [r.detail for r in refused]) if refused else _ACCEPTED
        return receipts

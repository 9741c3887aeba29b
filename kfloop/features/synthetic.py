"""Synthetic feedback events (valid schema v1, flattened as the collector does) for tests and benchmarks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from kfloop.events import parse_event
from kfloop.events.record import to_record


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def feedback_record(
    event_id: str,
    kind: str,
    user_id: str,
    item_id: str | None,
    ts: datetime,
    *,
    received_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One event of type `kind` as a flat log record; `fields` are the type's own (dwell_ms, rating, ...)."""
    body: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "user_id": user_id,
        "ts": iso(ts),
        "consent": {"personalization": True},
        **fields,
    }
    if item_id is not None:
        body["item_id"] = item_id
    if kind == "impression":
        body.setdefault("position", 1)
    return to_record(parse_event(body), received_at=received_at or datetime.now(UTC), source="synthetic")


_KINDS = ("impression",) * 6 + ("click", "click", "dwell", "scroll", "rating", "thumbs")


def synthetic_events(
    count: int,
    *,
    users: int = 5,
    items: int = 6,
    end: datetime,
    span: timedelta = timedelta(days=8),
    seed: int = 7,
) -> list[dict[str, Any]]:
    """`count` events of every type, for `users` users and `items` items, with ts spread over [end - span, end]."""
    rng = random.Random(seed)
    records = []
    for n in range(count):
        kind = rng.choice(_KINDS)
        ts = end - timedelta(microseconds=rng.randrange(int(span.total_seconds() * 1e6)))
        fields: dict[str, Any] = {}
        if kind == "impression":
            fields = {"position": rng.randint(1, 3), "request_id": f"req-{n}"}
        elif kind == "dwell":
            fields = {"dwell_ms": rng.randrange(0, 120_000)}
        elif kind == "scroll":
            fields = {"scroll_depth": round(rng.random(), 3)}
        elif kind == "rating":
            fields = {"rating": rng.randint(1, 5)}
        elif kind == "thumbs":
            fields = {"thumb": rng.choice(("up", "down"))}
        user, item = f"user-{rng.randrange(users)}", str(rng.randrange(items))
        records.append(feedback_record(f"ev-{seed}-{n:06d}", kind, user, item, ts, **fields))
    return records

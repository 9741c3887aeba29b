"""The flat, columnar form of an event: one row in the event log's Parquet files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from kfloop.events.schema import SERVING

_TS = pa.timestamp("us", tz="UTC")

# Column order is the file order. Type-specific columns are null where they do not apply. `source` is where an
# event came from: "serving" for the predictor's own impressions (an event's `source: "serving"`), else the
# channel a client's event came through (api, segment, obd-import, ...).
EVENT_ARROW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("signal", pa.string(), nullable=False),
        pa.field("schema_version", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("request_id", pa.string()),
        pa.field("ts", _TS, nullable=False),
        pa.field("received_at", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("consent_personalization", pa.bool_(), nullable=False),
        pa.field("consent_analytics", pa.bool_(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("policy", pa.string()),
        pa.field("propensity", pa.float64()),
        pa.field("dwell_ms", pa.int64()),
        pa.field("scroll_depth", pa.float64()),
        pa.field("value", pa.float64()),
        pa.field("rating", pa.int32()),
        pa.field("thumb", pa.string()),
        pa.field("question_id", pa.string()),
        pa.field("answer_choice", pa.string()),
        pa.field("answer_number", pa.float64()),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_ARROW_SCHEMA.names)
_TYPE_COLUMNS = ("position", "policy", "propensity", "dwell_ms", "scroll_depth", "value", "rating", "thumb")


def to_record(event: Any, *, received_at: datetime, source: str) -> dict[str, Any]:
    """Flatten a validated event into one log row (all columns present). `source` is the channel it came
    through; a served event's row says "serving" instead."""
    fields = event.__dict__  # plain dict lookups: getattr on a pydantic model's missing attribute is slow
    row: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS)
    row.update(
        event_id=event.event_id,
        type=event.type,
        signal=event.signal,
        schema_version=event.schema_version,
        user_id=event.user_id,
        item_id=fields.get("item_id"),
        request_id=event.request_id,
        ts=event.ts,
        received_at=received_at.astimezone(UTC),
        source=SERVING if event.source == SERVING else source,
        consent_personalization=event.consent.personalization,
        consent_analytics=event.consent.analytics,
        model_version=event.model_version,
        variant=event.variant,
    )
    for column in _TYPE_COLUMNS:
        row[column] = fields.get(column)
    if event.type == "survey":
        row["question_id"] = event.question_id
        if isinstance(event.answer, str):
            row["answer_choice"] = event.answer
        else:
            row["answer_number"] = float(event.answer)
    return row


def records_to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Build an Arrow table with the log's schema from flat records."""
    columns = {name: [r.get(name) for r in records] for name in EVENT_COLUMNS}
    return pa.Table.from_pydict(columns, schema=EVENT_ARROW_SCHEMA)

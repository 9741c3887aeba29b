"""Feedback event schema v1 and its flat storage form."""

from kfloop.events.schema import (
    SCHEMA_VERSION,
    EVENT_TAGS,
    SIGNAL_OF,
    Consent,
    Event,
    EventType,
    Signal,
    event_json_schema,
    parse_event,
)

__all__ = [
    "SCHEMA_VERSION",
    "EVENT_TAGS",
    "SIGNAL_OF",
    "Consent",
    "Event",
    "EventType",
    "Signal",
    "event_json_schema",
    "parse_event",
]

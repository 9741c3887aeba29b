"""Feedback event schema v1 and its flat storage form."""

from kfloop.events.schema import (
    EVENT_TAGS,
    SCHEMA_VERSION,
    SIGNAL_OF,
    Consent,
    Event,
    EventType,
    Signal,
    event_json_schema,
    parse_event,
)

__all__ = [
    "EVENT_TAGS",
    "SCHEMA_VERSION",
    "SIGNAL_OF",
    "Consent",
    "Event",
    "EventType",
    "Signal",
    "event_json_schema",
    "parse_event",
]

"""The durable, append-only feedback event log."""

from kfloop.eventlog.config import EventLogConfig
from kfloop.eventlog.store import read_events, sealed_files
from kfloop.eventlog.writer import ACCEPTED, DROPPED_CONSENT, DUPLICATE, EventLog

__all__ = [
    "ACCEPTED",
    "DROPPED_CONSENT",
    "DUPLICATE",
    "EventLog",
    "EventLogConfig",
    "read_events",
    "sealed_files",
]

"""Shared fixtures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kfloop.eventlog import EventLogConfig
from kfloop.events import parse_event
from kfloop.events.record import to_record

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def log_config(tmp_path: Path) -> EventLogConfig:
    return EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"))


def make_record(event_id: str, *, consent: bool = True, ts: str = "2026-11-23T10:00:00Z", **extra) -> dict:
    """A valid click event, flattened as the collector would."""
    event = parse_event(
        {
            "event_id": event_id,
            "type": "click",
            "user_id": "u-1",
            "item_id": "item-7",
            "ts": ts,
            "consent": {"personalization": consent},
            **extra,
        }
    )
    return to_record(event, received_at=datetime.now(UTC), source="test")

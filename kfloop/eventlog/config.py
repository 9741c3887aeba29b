"""Configuration of the durable event log."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kfloop.config import StrictModel


class EventLogConfig(StrictModel):
    """Where and how events are made durable, then sealed into Parquet."""

    wal_dir: Path = Path(".kfloop/wal")
    """Local directory for write-ahead segments (a persistent volume on a cluster). Never an object store:
    acknowledgement needs append + fsync."""
    log_uri: str = ".kfloop/events"
    """Where sealed Parquet files go: a local path or a pyarrow filesystem URI (s3://, gs://, hdfs://).
    Files land under `{log_uri}/events/date=YYYY-MM-DD/` (arrival date)."""
    segment_max_events: int = Field(default=50_000, ge=1)
    """Seal the open segment once it holds this many events."""
    segment_max_age_s: float = Field(default=30.0, gt=0)
    """Seal the open segment once it is this old, so readers see events within this delay."""
    dedup_capacity: int = Field(default=2_000_000, ge=1_000)
    """How many recent event ids each writer remembers to drop duplicates on arrival."""
    dedup_lookback_days: int = Field(default=2, ge=0)
    """On start, seed the duplicate filter from this many days of sealed partitions."""

"""Prometheus metrics of the event log (registered once, on the default registry)."""

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "kfloop_eventlog_events_total",
    "Events offered to the log, by outcome (accepted, duplicate, dropped_consent).",
    ["status"],
)
DURABLE_WRITE_SECONDS = Histogram(
    "kfloop_eventlog_durable_write_seconds",
    "Time to append and fsync one group commit to the write-ahead segment.",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
GROUP_COMMIT_EVENTS = Histogram(
    "kfloop_eventlog_group_commit_events",
    "Events written per fsync.",
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000),
)
SEALED_SEGMENTS = Counter("kfloop_eventlog_sealed_segments_total", "Write-ahead segments sealed into Parquet.")
CORRUPT_LINES = Counter(
    "kfloop_eventlog_corrupt_wal_lines_total",
    "Write-ahead lines skipped on recovery because their checksum failed (never acknowledged: torn tail).",
)

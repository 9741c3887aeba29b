"""Prometheus metrics of the feature updater (registered once, on the default registry)."""

from prometheus_client import Counter, Histogram

EVENTS_READ = Counter("kfloop_features_events_read_total", "Event-log records read by the feature updater.")
ROWS_WRITTEN = Counter("kfloop_features_rows_written_total", "Aggregate rows written to the online store.")
WRITE_SECONDS = Histogram(
    "kfloop_features_online_write_seconds",
    "Time to write one poll's changed aggregates to the online store.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
VISIBLE_AFTER = Histogram(
    "kfloop_features_event_visible_seconds",
    "From an event's arrival at the collector to its aggregates written online (wall clock).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
)

"""The collector's Prometheus metrics, on a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from serving.common.metrics import request_latency_histogram

PREFIX = "kfloop_collector"
DURABLE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            f"{PREFIX}_events_total",
            "Events received, by outcome (accepted, duplicate, dropped_consent, rejected) and source.",
            ["status", "source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected_events_total",
            "Events rejected by validation, by reason (the first error's kind).",
            ["reason", "source"],
            registry=self.registry,
        )
        self.dropped_consent = Counter(
            f"{PREFIX}_dropped_consent_total",
            "Events not stored because the user did not consent to personalization.",
            ["source"],
            registry=self.registry,
        )
        self.segment_messages = Counter(
            f"{PREFIX}_segment_messages_total",
            "Segment messages received, by message type and whether a mapping turned them into events.",
            ["type", "mapped"],
            registry=self.registry,
        )
        self.durable_write = Histogram(
            f"{PREFIX}_durable_write_seconds",
            "Time from handing a request's events to the log until they are fsynced (acknowledgeable).",
            buckets=DURABLE_BUCKETS,
            registry=self.registry,
        )
        self.request_latency = request_latency_histogram(PREFIX, self.registry)

    def count_outcomes(self, statuses: list[str], source: str) -> None:
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        for status, n in counts.items():
            self.events.labels(status, source).inc(n)
        if counts.get("dropped_consent"):
            self.dropped_consent.labels(source).inc(counts["dropped_consent"])

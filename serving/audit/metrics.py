"""The audit sink's Prometheus metrics, on a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.common.metrics import request_latency_histogram

PREFIX = "kfloop_audit_sink"
APPEND_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class AuditSinkMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter(
            f"{PREFIX}_records_total",
            "Records received, by kind and outcome (accepted, duplicate, conflict, rejected).",
            ["kind", "status"],
            registry=self.registry,
        )
        self.append_seconds = Histogram(
            f"{PREFIX}_append_seconds",
            "Time to chain and commit one request's records in the store.",
            buckets=APPEND_BUCKETS,
            registry=self.registry,
        )
        self.head_seq = Gauge(
            f"{PREFIX}_chain_head_seq", "Seq of the last record this sink appended.", registry=self.registry
        )
        self.request_latency = request_latency_histogram(PREFIX, self.registry)

    def count(self, kind: str, status: str, n: int = 1) -> None:
        self.records.labels(kind, status).inc(n)

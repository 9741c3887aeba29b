"""The joiner's counts as Prometheus metrics, read from a snapshot at each scrape (one source of truth).

Counters per model version and variant: `kfloop_joiner_impressions_total`, `kfloop_joiner_clicks_total`,
`kfloop_joiner_dwell_ms_total` (attributed), `kfloop_joiner_feedback_total{type}` (attributed),
`kfloop_joiner_late_feedback_total{type}`, `kfloop_joiner_unattributed_feedback_total{type,reason}`; and
`kfloop_joiner_duplicate_events_total{type}`, `kfloop_joiner_events_read_total`, gauges of the state. For the
alerts: `kfloop_joiner_reference_ctr{model_version}` (once the version's reference window is complete) and
`kfloop_joiner_last_feedback_timestamp_seconds` (before any feedback: when the joiner started, so that a loop
that never had feedback is seen as silent from then on, not as a series that is absent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from serving.joiner.follow import Snapshot

VARIANT = ("model_version", "variant")


def _counter(name: str, documentation: str, label_names: tuple[str, ...], values: Mapping[Any, float]) -> Metric:
    """A counter family with one series per key (a tuple of label values), in sorted order."""
    family = CounterMetricFamily(name, documentation, labels=list(label_names))
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _for_the_alerts(now: Snapshot) -> Iterator[Metric]:
    """The reference CTR of each version whose window is complete, and the newest feedback's arrival."""
    reference = GaugeMetricFamily(
        "kfloop_joiner_reference_ctr",
        "A version's online CTR over its reference window (its first impressions as stable), once complete.",
        labels=["model_version"],
    )
    for version, ctr in sorted(now.reference_ctr.items()):
        reference.add_metric([version], ctr)
    yield reference
    last = now.last_feedback_us if now.last_feedback_us is not None else now.started_us
    yield GaugeMetricFamily(
        "kfloop_joiner_last_feedback_timestamp_seconds",
        "Arrival time of the newest feedback event, Unix seconds (before any: when the joiner started).",
        last / 1e6,
    )


class JoinExporter:
    """A Prometheus collector over `snapshot()`. Every (model_version, variant) that has impressions or
    attributed feedback gets a clicks and a dwell series, zero included, so a CTR can always be computed."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        now = self.snapshot()
        counts = now.counts
        served = set(counts.impressions) | {(key[0], key[1]) for key in counts.attributed}
        yield from (
            _counter(
                "kfloop_joiner_impressions",
                "Impressions, by the model version and variant that served them (unknown: not named).",
                VARIANT,
                {labels: counts.impressions[labels] for labels in served},
            ),
            _counter(
                "kfloop_joiner_clicks",
                "Clicks joined to a served impression by request id within the attribution window.",
                VARIANT,
                {labels: counts.attributed[(*labels, "click")] for labels in served},
            ),
            _counter(
                "kfloop_joiner_dwell_ms",
                "Milliseconds of dwell joined to a served impression within the attribution window.",
                VARIANT,
                {labels: counts.dwell_ms[labels] for labels in served},
            ),
            _counter(
                "kfloop_joiner_feedback",
                "Feedback joined to a served impression within the attribution window, by type.",
                (*VARIANT, "type"),
                counts.attributed,
            ),
            _counter(
                "kfloop_joiner_late_feedback",
                "Feedback later than its request's attribution window: counted, dropped.",
                (*VARIANT, "type"),
                counts.late,
            ),
            _counter(
                "kfloop_joiner_unattributed_feedback",
                "Feedback with no impression to join (reason no_request_id; or unknown_request, once it waited "
                "the window); the labels are the feedback's own, else unknown.",
                (*VARIANT, "type", "reason"),
                counts.unattributed,
            ),
            _counter(
                "kfloop_joiner_duplicate_events",
                "Copies of an event already counted (same event_id), by type.",
                ("type",),
                {(kind,): n for kind, n in counts.duplicates.items()},
            ),
            CounterMetricFamily("kfloop_joiner_events_read", "Event-log records read since start.", now.events_read),
            GaugeMetricFamily("kfloop_joiner_replayed_events", "Records replayed on start.", now.replayed),
            GaugeMetricFamily("kfloop_joiner_pending_feedback", "Feedback waiting for its impressions.", now.pending),
            GaugeMetricFamily("kfloop_joiner_requests", "Requests remembered (for late feedback).", now.requests),
        )
        yield from _for_the_alerts(now)


def joiner_registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry of its own (not the process-wide default), so each app instance exports its own joiner."""
    registry = CollectorRegistry()
    registry.register(JoinExporter(snapshot))
    return registry

"""The controller's metrics (docs/metrics.md), read from its state at each scrape: one source of truth, and
counters that carry on across restarts instead of starting again at zero.

`kfloop_controller_actions_total{action,outcome}`, `kfloop_controller_paused`,
`kfloop_controller_open_actions{action}`, and the training pipeline's last run:
`kfloop_pipeline_last_run_success{pipeline="training"}`, `kfloop_pipeline_last_run_timestamp_seconds{pipeline}`
(absent until a run has ended).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kfloop.audit.canonical import parse_rfc3339
from monitoring.controller.engine import Controller

TRAINING = "training"


class ControllerExporter:
    def __init__(self, controller: Controller, retrain_kind: str = "retrain") -> None:
        self.controller = controller
        self.retrain_kind = retrain_kind

    def collect(self) -> Iterator[Metric]:
        if not self.controller.store.ready:
            return
        store = self.controller.store
        actions = CounterMetricFamily(
            "kfloop_controller_actions", "Actions finished, by action and outcome.", labels=["action", "outcome"]
        )
        for kind, outcome, count in sorted(store.outcome_counts()):
            actions.add_metric([kind, outcome or ""], count)
        yield actions
        open_actions = GaugeMetricFamily("kfloop_controller_open_actions", "Actions under way.", labels=["action"])
        for kind, count in sorted(Counter(a.kind for a in store.open_actions()).items()):
            open_actions.add_metric([kind], count)
        yield open_actions
        paused = 1.0 if self.controller.paused() is not None else 0.0
        yield GaugeMetricFamily("kfloop_controller_paused", "1 while the kill switch is on (kfloop pause).", paused)
        yield from self._last_run()

    def _last_run(self) -> Iterator[Metric]:
        run_end = self.controller.store.last_run_end(self.retrain_kind)
        if run_end is None:
            return
        success = GaugeMetricFamily(
            "kfloop_pipeline_last_run_success",
            "1 if the last run the controller started succeeded, 0 if it failed.",
            labels=["pipeline"],
        )
        success.add_metric([TRAINING], 1.0 if run_end.get("success") else 0.0)
        ended = GaugeMetricFamily(
            "kfloop_pipeline_last_run_timestamp_seconds", "When that run ended.", labels=["pipeline"]
        )
        ended.add_metric([TRAINING], parse_rfc3339(run_end["ended_at"]).timestamp())
        yield success
        yield ended


def controller_registry(controller: Controller) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerExporter(controller))
    return registry

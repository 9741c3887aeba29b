"""The controller's metrics (docs/metrics.md), read from its state at each scrape: one source of truth, and
counters that carry on across restarts instead of starting again at zero.

`kfloop_controller_actions_total{action,outcome}`, `kfloop_controller_paused`,
`kfloop_controller_open_actions{action}`, and the training pipeline's last run:
`kfloop_pipeline_last_run_success{pipeline="training"}`, `kfloop_pipeline_last_run_timestamp_seconds{pipeline}`
(absent until a run has ended). Per experiment stage (running, or finished within
`experiment.metrics_retention_s`), its test's last evaluation: `kfloop_experiment_statistic`,
`kfloop_experiment_boundary` (decided when the statistic passes +-boundary), `kfloop_experiment_impressions{arm}`,
`kfloop_experiment_decision{decision}` (1 for the current one, 0 for the others), labelled experiment, stage and
model_version (the candidate). A shadow stage's off-policy comparison (once computed):
`kfloop_experiment_offpolicy_value{policy="candidate"|"production"|"difference",bound="estimate"|"low"|"high"}`,
`kfloop_experiment_offpolicy_slots{kind="logged"|"matched"|"clicked"}`, `kfloop_experiment_offpolicy_margin`, and
`kfloop_experiment_decision{decision}` over the shadow's decisions (non_inferior, inferior, undecided, thin_evidence).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kfloop.audit.canonical import parse_rfc3339
from kfloop.experiments import DECISIONS
from kfloop.experiments.shadow import SHADOW_DECISIONS
from kfloop.experiments.store import ExperimentStore
from monitoring.controller.engine import Controller

TRAINING = "training"


class ControllerExporter:
    def __init__(self, controller: Controller, retrain_kind: str = "retrain", retention_s: float = 900.0) -> None:
        self.controller = controller
        self.retrain_kind = retrain_kind
        self.retention_s = retention_s

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
        if self.controller.experiments is not None:
            yield from experiment_metrics(self.controller.experiments, time.time() - self.retention_s)

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


def experiment_metrics(store: ExperimentStore, since_s: float) -> Iterator[Metric]:
    """The last evaluation of each gated stage of the experiments running or finished after `since_s`."""
    families = _Families()
    for experiment in store.list_experiments():
        if experiment.finished_at is not None and parse_rfc3339(experiment.finished_at).timestamp() < since_s:
            continue
        for stage, last in store.decisions(experiment.id):
            if last is None:
                continue
            key = [experiment.id, stage.name, experiment.model_version]
            if last.numbers.get("kind") == "off_policy":
                families.off_policy(key, last.numbers)
            else:
                families.test(key, last.numbers)
            names = SHADOW_DECISIONS if last.numbers.get("kind") == "off_policy" else DECISIONS
            for name in names:
                families.decision.add_metric([*key, name], 1.0 if name == last.decision else 0.0)
    yield from families.all()


class _Families:
    """The experiment metric families, filled stage by stage."""

    def __init__(self) -> None:
        labels = ["experiment", "stage", "model_version"]
        self.statistic = GaugeMetricFamily(
            "kfloop_experiment_statistic", "The stage's test statistic z.", labels=labels
        )
        self.boundary = GaugeMetricFamily(
            "kfloop_experiment_boundary", "The always-valid boundary: decided when |z| reaches it.", labels=labels
        )
        self.impressions = GaugeMetricFamily(
            "kfloop_experiment_impressions", "Impressions of each arm in the stage.", labels=[*labels, "arm"]
        )
        self.decision = GaugeMetricFamily(
            "kfloop_experiment_decision", "1 for the stage's current decision.", labels=[*labels, "decision"]
        )
        self.value = GaugeMetricFamily(
            "kfloop_experiment_offpolicy_value",
            "A shadow stage's off-policy clicks per slot (candidate, production, their difference) and interval.",
            labels=[*labels, "policy", "bound"],
        )
        self.slots = GaugeMetricFamily(
            "kfloop_experiment_offpolicy_slots",
            "Production's logged slots of the mirrored requests: all, matched by the shadow, clicked.",
            labels=[*labels, "kind"],
        )
        self.margin = GaugeMetricFamily(
            "kfloop_experiment_offpolicy_margin", "The shadow gate's non-inferiority margin.", labels=labels
        )

    def test(self, key: list[str], numbers: dict[str, Any]) -> None:
        self.statistic.add_metric(key, _number(numbers["statistic"]))
        self.boundary.add_metric(key, _number(numbers["boundary"]))
        self.impressions.add_metric([*key, "candidate"], numbers["candidate_impressions"])
        self.impressions.add_metric([*key, "control"], numbers["control_impressions"])

    def off_policy(self, key: list[str], numbers: dict[str, Any]) -> None:
        for policy in ("candidate", "production", "difference"):
            for bound, suffix in (("estimate", ""), ("low", "_low"), ("high", "_high")):
                self.value.add_metric([*key, policy, bound], _number(numbers[policy + suffix]))
        for kind, field in (("logged", "rows"), ("matched", "matched"), ("clicked", "clicks")):
            self.slots.add_metric([*key, kind], numbers[field])
        self.margin.add_metric(key, numbers["margin"])

    def all(self) -> tuple[Metric, ...]:
        return (self.statistic, self.boundary, self.impressions, self.decision, self.value, self.slots, self.margin)


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def controller_registry(controller: Controller, retention_s: float = 900.0) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerExporter(controller, retention_s=retention_s))
    return registry

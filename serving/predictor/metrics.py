"""The predictor's metrics of docs/metrics.md, for the one model version a process serves:

- `kfloop_ranking_requests_total{role="predictor"}` and `kfloop_ranking_request_seconds` (every ranking request
  answered, errors included: told by serving.common.ranking_metrics.RankingAnswers);
- `kfloop_predictor_score`, the scores of the shown items;
- `kfloop_model_created_timestamp_seconds`, when the version was registered (its model card);
- `kfloop_feature_drift{method="psi"}`, each model input's PSI against the version's training baseline
  (serving.predictor.drift), recomputed every `drift.update_interval_s` in a background thread.

Series are labelled by variant as the requests name it (the router's header, else the configured variant),
bounded to stable, canary, shadow, the configured one and `other`.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import numpy as np
from prometheus_client import Gauge, Histogram

from kfloop.errors import KfloopError
from serving.common.ranking_metrics import metric_variant, ranking_requests_counter, ranking_seconds_histogram
from serving.common.versions import ResolvedVersion
from serving.predictor.config import DriftConfig
from serving.predictor.drift import DriftWindow, InputBinner, read_baseline

log = logging.getLogger(__name__)

ROLE = "predictor"
SCORE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Scores are click probabilities: mostly small, so the buckets are finer near 0."""

_MAX_KEPT = 1000
REQUESTS = ranking_requests_counter()
SECONDS = ranking_seconds_histogram()
SCORES = Histogram(
    "kfloop_predictor_score",
    "Scores (click probabilities) of the items shown.",
    ["model_version", "variant"],
    buckets=SCORE_BUCKETS,
)
CREATED = Gauge(
    "kfloop_model_created_timestamp_seconds",
    "When the served model version was registered (its model card's created_at), Unix seconds.",
    ["model_version", "variant"],
)
DRIFT = Gauge(
    "kfloop_feature_drift",
    "Drift of a model input over the predictor's sliding window of shown items against the version's training "
    "baseline (method psi: population stability index).",
    ["model_version", "variant", "feature", "method"],
)


class PredictorMetrics:
    """Everything the predictor measures about the version it serves; `start` once the model has loaded."""

    def __init__(self, resolved: ResolvedVersion, default_variant: str, drift: DriftConfig) -> None:
        self.version = resolved.version
        self.created = datetime.fromisoformat(resolved.card.created_at).timestamp()
        self.default_variant = default_variant
        self.drift = drift
        self.baseline_path = resolved.baseline_path if drift.enabled else None
        self.binner: InputBinner | None = None
        self.windows: dict[str, DriftWindow] = {}
        # prometheus_client's labels() takes a lock and checks the values each time: its children are kept here
        self._answers: dict[tuple[str | None, int], tuple[Any, Any]] = {}
        self._scores: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- on the request path ---------------------------------------------------------------------------
    def observe_answer(self, variant: str | None, status: int, seconds: float) -> None:
        """A ranking request answered (any status)."""
        children = self._answers.get((variant, status))
        if children is None:
            children = self._answer_children(variant, status)
        children[0].inc()
        children[1].observe(seconds)

    def observe_slate(self, variant: str, tensors: dict[str, np.ndarray], slate: list[int], scores: Any) -> None:
        """A slate served: its items' scores, and their inputs into the variant's drift window."""
        histogram = self._scores.get(variant)
        if histogram is None:
            histogram = SCORES.labels(self.version, metric_variant(variant, self.default_variant))
            if len(self._scores) < _MAX_KEPT:
                self._scores[variant] = histogram
        for index in slate:
            histogram.observe(float(scores[index]))
        if self.binner is not None and self.binner.features and slate:
            label = metric_variant(variant, self.default_variant)
            window = self.windows.get(label)
            if window is None:
                window = self.windows[label] = DriftWindow(self.binner.features, self.drift.window)
            window.add(self.binner.codes(tensors, slate))

    def _answer_children(self, variant: str | None, status: int) -> tuple[Any, Any]:
        """The series of a (variant header, status) seen for the first time; the version's creation time is
        set for the variant then."""
        label = metric_variant(variant, self.default_variant)
        CREATED.labels(self.version, label).set(self.created)
        children = (REQUESTS.labels(ROLE, self.version, label, str(status)), SECONDS.labels(ROLE, self.version, label))
        if len(self._answers) < _MAX_KEPT:  # a client's made-up variants: labelled "other", and not kept
            self._answers[(variant, status)] = children
        return children

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self, columns: dict[str, list[str]]) -> None:
        """The model's inputs by matrix (SavedRanker.columns) are known: read the baseline, start the updates."""
        self.binner = self._binner(columns)
        if self.binner is None:
            return
        self._thread = threading.Thread(target=self._update_loop, name="drift-update", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def update_drift(self) -> None:
        """Recompute each variant's PSI per input (once its window holds `min_samples` shown items)."""
        for variant, window in list(self.windows.items()):
            values = window.psi(self.drift.min_samples)
            for feature, value in (values or {}).items():
                DRIFT.labels(self.version, variant, feature, "psi").set(value)

    def _update_loop(self) -> None:
        while not self._stop.wait(self.drift.update_interval_s):
            try:
                self.update_drift()
            except Exception:  # a bug here must not stop the updates for good, nor serving
                log.exception("drift update failed")

    def _binner(self, columns: dict[str, list[str]]) -> InputBinner | None:
        if not self.drift.enabled:
            return None
        if self.baseline_path is None:
            log.info("model version %s has no baseline.json: no input drift is exported", self.version)
            return None
        try:
            binner = InputBinner(read_baseline(self.baseline_path), columns, frozenset(self.drift.exclude))
        except KfloopError as exc:  # serving goes on; the drift alert cannot fire for this version
            log.error("model version %s: no input drift is exported: %s", self.version, exc.message)
            return None
        log.info(
            "input drift of %s: %d inputs watched; without a baseline histogram: %s; excluded: %s",
            self.version,
            len(binner.features),
            ", ".join(binner.unwatched) or "none",
            ", ".join(binner.excluded) or "none",
        )
        return binner

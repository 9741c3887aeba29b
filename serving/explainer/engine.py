"""Explanations of ranking decisions with Alibi 0.9.4 (the last Apache-2.0 release); nothing hand-rolled.

For each shown item, from the exact inputs the model was given:

- What the decision recorded about its slot (serving.explainer.slate): its rank by score, whether that puts it
  in the top k, and whether the policy drew it greedily or by exploration. Both parts below read these; neither
  re-derives them.
- IntegratedGradients attributions of the item's score to its input features. Gradients cannot pass through
  string lookups, so Alibi differentiates the numeric post-transform sub-model the trainer exports
  (x -> score; rebuilt in Keras from its weights), with the raw inputs mapped to x by the serving model's
  `explain_inputs` signature and the trainer's baseline (the mean training x). Columns of x are summed back
  into the feature they came from (an embedding's columns into its categorical feature).
- AnchorTabular rules a person can read, for "why was this item in (or out of) the top k by score"
  (serving.explainer.anchors), stated as the reason only at the configured precision (serving.explainer.wording).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from kfloop.features import names
from serving.common.names import EXPLAINER_NAME
from serving.explainer.anchors import CandidateTable, TowerScorer, explain_anchors
from serving.explainer.config import ExplainerConfig
from serving.explainer.inputs import Slot, slate_size, slots_of, unpack_inputs
from serving.explainer.models import VersionModels, load_version
from serving.explainer.slate import ShownItem, shown_slate
from serving.explainer.wording import readable

__all__ = ["EXPLAINER_NAME", "ExplanationEngine", "readable"]


class ExplanationEngine:
    """Explains decisions of any registered version (loaded on demand, a few kept)."""

    name = EXPLAINER_NAME

    def __init__(self, config: ExplainerConfig) -> None:
        self.config = config
        self._versions: OrderedDict[str, VersionModels] = OrderedDict()
        self._lock = threading.Lock()

    # -- the audit Explainer protocol ----------------------------------------------------------------------
    def __call__(self, decision: Any) -> dict[str, Any]:
        return self.explain(decision.model_version, dict(decision.inputs), slots_of(decision))

    # -- versions ------------------------------------------------------------------------------------------
    def models(self, version: str | None) -> VersionModels:
        key = version or ""
        with self._lock:
            if key in self._versions:
                self._versions.move_to_end(key)
                return self._versions[key]
        loaded = load_version(self.config, version or self.config.model_version)
        with self._lock:
            self._versions[key] = loaded
            while len(self._versions) > self.config.max_loaded_versions:
                self._versions.popitem(last=False)
        return loaded

    # -- explanations --------------------------------------------------------------------------------------
    def explain(
        self, model_version: str | None, inputs: dict[str, Any], slate: list[Slot | str] | None
    ) -> dict[str, Any]:
        """Explain the shown items of one decision (slate None: the top k by score, k from the inputs; a bare item
        id in the slate: a slot whose rank and draw were not recorded)."""
        slots = None if slate is None else [s if isinstance(s, Slot) else Slot(s) for s in slate]
        models = self.models(model_version)
        candidates, user, items = unpack_inputs(inputs)
        ranker = models.ranker
        feed = ranker.feed(candidates, user, items)
        scores, logits = (np.asarray(a, dtype=np.float64) for a in ranker.score(feed))
        k = slate_size(inputs.get("k")) if slots is None else len(slots)  # the recorded k only without a slate
        shown = shown_slate(candidates, scores, logits, slots, k, models.version)
        rows = [item.row for item in shown.items]
        x = ranker.explain_inputs(feed)
        attributions = self._attributions(models, x[rows])
        scorer = TowerScorer(models, CandidateTable.build(candidates, items, ranker.input_kinds), x)
        scorer.check(user)
        anchors = explain_anchors(self.config.anchor, scorer, shown, scores)
        explained = [
            self._item_json(item, candidates, scores, (user, items), attribution, anchor)
            for item, attribution, anchor in zip(shown.items, attributions, anchors, strict=True)
        ]
        return {
            "explainer": EXPLAINER_NAME,
            "model_version": models.version,
            "k": shown.k,
            "top_k_score_threshold": float(scores[shown.order[shown.k - 1]]),
            "candidates": len(candidates),
            "items": explained,
        }

    def _item_json(
        self,
        item: ShownItem,
        candidates: list[str],
        scores: np.ndarray,
        features: tuple[dict[str, Any], dict[str, list[Any]]],
        attribution: dict[str, Any],
        anchor: dict[str, Any],
    ) -> dict[str, Any]:
        row = item.row
        return {
            "item_id": candidates[row],
            "position": item.position,
            "score": float(scores[row]),
            "rank_by_score": item.rank,
            "in_top_k_by_score": item.in_top_k,
            "draw": item.draw,
            "slot_source": item.source,
            "integrated_gradients": self._attribution_json(attribution, candidates[row], *features, row),
            "anchor": anchor,
        }

    def _attributions(self, models: VersionModels, x: np.ndarray) -> list[dict[str, Any]]:
        x = x.astype(np.float32)
        baselines = np.tile(models.baseline, (len(x), 1))
        # target=1: the model's single output is the score itself (Alibi reads target 0 as 1 - output)
        result = models.integrated_gradients.explain(x, baselines=baselines, target=1)
        columns = np.asarray(result.data["attributions"][0])
        predictions = np.asarray(models.tower(x)).reshape(-1)
        at_baseline = float(np.asarray(models.tower(baselines[:1])).reshape(-1)[0])
        out = []
        for i in range(len(x)):
            by_feature = {e["feature"]: float(columns[i, e["start"] : e["end"]].sum()) for e in models.layout}
            out.append({"by_feature": by_feature, "score": float(predictions[i]), "baseline_score": at_baseline})
        return out

    def _attribution_json(
        self, attribution: dict[str, Any], item: str, user: dict[str, Any], items: dict[str, list[Any]], row: int
    ) -> dict[str, Any]:
        by_feature = attribution["by_feature"]
        top = sorted(by_feature, key=lambda f: abs(by_feature[f]), reverse=True)[
            : self.config.integrated_gradients.top_features
        ]
        values = {**user, **{n: column[row] for n, column in items.items()}, names.ITEM_ID: item}
        return {
            "baseline": "mean training input (explainer.json)",
            "baseline_score": attribution["baseline_score"],
            "score": attribution["score"],
            "sum_of_attributions": float(sum(by_feature.values())),
            "top": [
                {"feature": f, "label": readable(f), "value": values.get(f), "attribution": by_feature[f]} for f in top
            ],
            "by_feature": by_feature,
        }

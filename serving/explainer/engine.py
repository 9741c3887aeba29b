"""Explanations of ranking decisions with Alibi 0.9.4 (the last Apache-2.0 release); nothing hand-rolled.

For each shown item, from the exact inputs the model was given:

- IntegratedGradients attributions of the item's score to its input features. Gradients cannot pass through
  string lookups, so Alibi differentiates the numeric post-transform sub-model the trainer exports
  (x -> score; rebuilt in Keras from its weights), with the raw inputs mapped to x by the serving model's
  `explain_inputs` signature and the trainer's baseline (the mean training x). Columns of x are summed back
  into the feature they came from (an embedding's columns into its categorical feature).
- AnchorTabular rules a person can read, for "why was this item in the slate": the classifier is "does this
  item score among the top k of this request's candidates", the data the sampler perturbs with is the
  request's own candidates (so a rule says what sets the item apart from the alternatives it beat). An item
  that is not in the top k was shown by exploration; its rule then explains why it would not have been.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kfloop import model_contract as contract
from kfloop.audit.record import CONTEXT_REF
from kfloop.errors import MalformedRequest
from kfloop.features import names
from serving.common.names import EXPLAINER_NAME
from serving.common.protocol import expand_mostly
from serving.common.versions import resolve
from serving.explainer.config import ExplainerConfig

# -- one version's models ---------------------------------------------------------------------------------


@dataclass
class VersionModels:
    version: str
    ranker: Any
    """serving.common.model_io.SavedRanker: raw features -> score, and -> x."""
    tower: Any
    """Keras model x -> score, rebuilt from the explainer export (what Alibi differentiates)."""
    tower_signature: Any
    """The exported explainer SavedModel's signature x -> score (fast scoring of anchor samples)."""
    integrated_gradients: Any
    layout: list[dict[str, Any]]
    baseline: np.ndarray


def build_tower(explainer_dir: Path) -> tuple[Any, contract.ExplainerDescription]:
    """The explainer sub-model in Keras (whatever Keras the serving side runs), from weights.npz and
    explainer.json: dense layers, then + the fixed serving-position bias, then sigmoid."""
    import keras

    description = contract.read_explainer_description(explainer_dir)
    weights = contract.read_explainer_weights(explainer_dir, description)
    inputs = keras.Input((description.input_width,), name=contract.X)
    hidden = inputs
    for index, (layer, (kernel, offset)) in enumerate(zip(description.layers, weights, strict=True)):
        dense = keras.layers.Dense(layer.units, activation=layer.activation, name=f"dense_{index}")
        hidden = dense(hidden)
        dense.set_weights([kernel, offset])
    bias = description.position_bias
    shifted = keras.layers.Rescaling(1.0, offset=bias, name="position_bias")(hidden)
    score = keras.layers.Activation("sigmoid", name="score")(shifted)
    return keras.Model(inputs, score), description


def load_version(config: ExplainerConfig, version: str | None) -> VersionModels:
    from alibi.explainers import IntegratedGradients

    from serving.common.model_io import SavedRanker, import_tensorflow

    resolved = resolve(config.registry_uri, version, None, config.cache_dir)
    if resolved.explainer_path is None:
        raise MalformedRequest(f"model version {resolved.version} has no explainer export")
    tower, description = build_tower(resolved.explainer_path)
    ig = config.integrated_gradients
    exported = import_tensorflow().saved_model.load(str(resolved.explainer_path))
    return VersionModels(
        version=resolved.version,
        ranker=SavedRanker(resolved.model_path),
        tower=tower,
        tower_signature=_KeepAlive(exported, exported.signatures[contract.SERVING_SIGNATURE]),
        integrated_gradients=IntegratedGradients(
            tower, method=ig.method, n_steps=ig.n_steps, internal_batch_size=ig.internal_batch_size
        ),
        layout=[span.model_dump() for span in description.layout],
        baseline=np.asarray(description.baseline, dtype=np.float32),
    )


class _KeepAlive:
    """A SavedModel signature (x -> score) as a numpy function; holds the loaded object it needs."""

    def __init__(self, loaded: Any, signature: Any) -> None:
        self._loaded, self._signature = loaded, signature

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._signature(**{contract.X: x.astype(np.float32)})[contract.SCORE].numpy().reshape(-1)


# -- readable names -------------------------------------------------------------------------------------

_STATS = {
    "impressions": "views",
    "clicks": "clicks",
    "ctr": "click rate",
    "dwell_s": "dwell seconds",
    "scroll_depth": "scroll depth",
    "ratings": "ratings",
    "rating_mean": "mean rating",
    "thumbs_up": "thumbs up",
    "thumbs_down": "thumbs down",
}
_AGGREGATE = re.compile(r"^(ui|u)_(.+)_(\d+[smhdw])$")


def readable(name: str) -> str:
    """A feature name in words: ui_clicks_7d -> "your clicks on this item in the last 7d"."""
    if name == names.ITEM_ID:
        return "item id"
    match = _AGGREGATE.match(name)
    if match and match.group(2) in _STATS:
        prefix, stat, window = match.groups()
        where = " on this item" if prefix == names.USER_ITEM_PREFIX else ""
        return f"your {_STATS[stat]}{where} in the last {window}"
    for kind in ("item_feature_", "user_feature_"):
        if name.startswith(kind):
            return f"{kind[:-1].replace('_', ' ')} {name[len(kind) :]}"
    return name


def readable_condition(condition: str, feature_names: list[str]) -> str:
    for name in sorted(feature_names, key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", condition):
            return re.sub(rf"(?<![\w]){re.escape(name)}(?![\w])", readable(name), condition, count=1)
    return condition


# -- anchors over the request's candidates ---------------------------------------------------------------


@dataclass
class CandidateTable:
    """The request's candidates as a numeric matrix AnchorTabular can perturb (categories as codes)."""

    columns: list[str]
    kinds: list[str]
    vocab: dict[int, list[str]]
    matrix: np.ndarray

    @classmethod
    def build(cls, candidates: list[str], items: dict[str, list[Any]], input_kinds: dict[str, str]) -> CandidateTable:
        columns = [names.ITEM_ID, *[n for n in items if n in input_kinds]]
        data = {names.ITEM_ID: candidates, **items}
        kinds, vocab, matrix = [], {}, np.empty((len(candidates), len(columns)))
        for j, name in enumerate(columns):
            kind = "string" if name == names.ITEM_ID else input_kinds[name]
            kinds.append(kind)
            if kind == "string":
                values = sorted(set(data[name]))
                code = {v: i for i, v in enumerate(values)}
                vocab[j] = values
                matrix[:, j] = [code[v] for v in data[name]]
            else:
                matrix[:, j] = np.asarray(data[name], dtype=np.float64)
        return cls(columns, kinds, vocab, matrix)

    def decode(self, rows: np.ndarray) -> tuple[list[str], dict[str, list[Any]]]:
        rows = np.atleast_2d(rows)
        items: dict[str, list[Any]] = {}
        candidates: list[str] = []
        for j, name in enumerate(self.columns):
            column = rows[:, j]
            if self.kinds[j] == "string":
                values = [self.vocab[j][int(np.rint(c))] for c in column]
            elif self.kinds[j] == "int":
                values = np.round(column).astype(np.int64).tolist()
            else:
                values = column.tolist()
            if name == names.ITEM_ID:
                candidates = values
            else:
                items[name] = values
        return candidates, items


class ExplanationEngine:
    """Explains decisions of any registered version (loaded on demand, a few kept)."""

    name = EXPLAINER_NAME

    def __init__(self, config: ExplainerConfig) -> None:
        self.config = config
        self._versions: OrderedDict[str, VersionModels] = OrderedDict()
        self._lock = threading.Lock()

    # -- the audit Explainer protocol ----------------------------------------------------------------------
    def __call__(self, decision: Any) -> dict[str, Any]:
        slate = [c.item_id for c in sorted(decision.candidates, key=lambda c: c.position)]
        return self.explain(decision.model_version, dict(decision.inputs), slate)

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
    def explain(self, model_version: str | None, inputs: dict[str, Any], slate: list[str] | None) -> dict[str, Any]:
        """Explain the shown items of one decision (slate None: the top k by score, k from the inputs)."""
        models = self.models(model_version)
        candidates, user, items = unpack_inputs(inputs)
        ranker = models.ranker
        feed = ranker.feed(candidates, user, items)
        scores = ranker.score(feed)[0].astype(np.float64)
        order = np.argsort(-scores, kind="stable")
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order))
        k = min(len(slate) if slate else _slate_size(inputs.get("k")), len(candidates))
        shown = slate or [candidates[i] for i in order[:k]]
        index = {c: i for i, c in enumerate(candidates)}
        missing = [s for s in shown if s not in index]
        if missing:
            raise MalformedRequest(f"slate items {missing} are not among the decision's candidates")
        rows = [index[s] for s in shown]
        threshold = float(scores[order[k - 1]])
        x = ranker.explain_inputs(feed)
        attributions = self._attributions(models, x[rows])
        anchors = self._anchors(models, candidates, user, items, rows, x, k)
        explained = []
        for position, (row, attribution, anchor) in enumerate(zip(rows, attributions, anchors, strict=True), start=1):
            explained.append(
                {
                    "item_id": candidates[row],
                    "position": position,
                    "score": float(scores[row]),
                    "rank_by_score": int(rank[row]) + 1,
                    "in_top_k_by_score": bool(rank[row] < k),
                    "integrated_gradients": self._attribution_json(
                        models, attribution, candidates[row], user, items, row
                    ),
                    "anchor": anchor,
                }
            )
        return {
            "explainer": EXPLAINER_NAME,
            "model_version": models.version,
            "k": k,
            "top_k_score_threshold": threshold,
            "candidates": len(candidates),
            "items": explained,
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
        self, models: VersionModels, attribution: dict[str, Any], item: str, user: dict, items: dict, row: int
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

    def _anchors(
        self,
        models: VersionModels,
        candidates: list[str],
        user: dict[str, Any],
        items: dict[str, list[Any]],
        rows: list[int],
        x: np.ndarray,
        k: int,
    ) -> list[dict[str, Any]]:
        from alibi.explainers import AnchorTabular

        table = CandidateTable.build(candidates, items, models.ranker.input_kinds)
        scorer = TowerScorer(models, table, x, k)
        scorer.check(user)
        config = self.config.anchor
        anchor = AnchorTabular(scorer.in_top_k, table.columns, categorical_names=table.vocab, seed=config.seed)
        anchor.fit(table.matrix, disc_perc=tuple(config.percentiles))
        out = []
        for row in rows:
            result = anchor.explain(
                table.matrix[row],
                threshold=config.threshold,
                batch_size=config.batch_size,
                coverage_samples=config.coverage_samples,
                beam_size=config.beam_size,
                max_anchor_size=config.max_anchor_size,
            )
            out.append(_anchor_json(result, table.columns))
        return out


class TowerScorer:
    """Scores rows AnchorTabular samples, fast: every column of x comes from one raw feature (the layout the
    trainer exports), and every sampled value is one of the candidates' own values, so a sample's x is
    assembled from the candidates' x columns and only the numeric sub-model runs. `check` compares this
    with the full serving model on random samples and refuses a model where it would not hold."""

    def __init__(self, models: VersionModels, table: CandidateTable, x: np.ndarray, k: int) -> None:
        self.models, self.table, self.x = models, table, x.astype(np.float32)
        spans = {e["feature"]: (e["start"], e["end"]) for e in models.layout}
        self.spans = [spans[name] for name in table.columns]
        # per anchor column: sorted distinct encoded values, and a candidate row holding each
        self.values, self.rows = [], []
        for j in range(len(table.columns)):
            distinct, first = np.unique(table.matrix[:, j], return_index=True)
            self.values.append(distinct)
            self.rows.append(first)
        # the k-th best candidate score, by the same computation the samples get (no float drift at the edge)
        self.threshold = float(np.sort(self.score(table.matrix))[::-1][k - 1])

    def score(self, encoded: np.ndarray) -> np.ndarray:
        encoded = np.atleast_2d(encoded)
        x = np.repeat(self.x[:1], len(encoded), axis=0)
        for j, (start, end) in enumerate(self.spans):
            where = np.searchsorted(self.values[j], encoded[:, j])
            where = np.clip(where, 0, len(self.values[j]) - 1)
            x[:, start:end] = self.x[self.rows[j][where], start:end]
        return self.models.tower_signature(x)

    def in_top_k(self, encoded: np.ndarray) -> np.ndarray:
        return (self.score(encoded) >= self.threshold).astype(int)

    def check(self, user: dict[str, Any], samples: int = 32, tolerance: float = 1e-4) -> None:
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(self.table.matrix), size=(samples, len(self.table.columns)))
        mixed = self.table.matrix[picks, np.arange(len(self.table.columns))]
        candidates, items = self.table.decode(mixed)
        ranker = self.models.ranker
        full = ranker.score(ranker.feed(candidates, user, items))[0]
        gap = float(np.max(np.abs(full - self.score(mixed))))
        if gap > tolerance:
            raise MalformedRequest(
                f"model version {self.models.version}: its explainer export does not reproduce its scores "
                f"feature by feature (gap {gap:.2g}); anchors cannot be computed for it"
            )


def _anchor_json(result: Any, columns: list[str]) -> dict[str, Any]:
    conditions = list(result.anchor)
    in_slate = int(np.asarray(result.raw["prediction"]).reshape(-1)[0]) == 1
    readable_conditions = [readable_condition(c, columns) for c in conditions]
    if in_slate:
        because = " AND ".join(readable_conditions) if conditions else "almost any of the candidates would be"
        text = f"shown because {because}"
    else:
        because = " AND ".join(readable_conditions) if conditions else "few of the candidates would be"
        text = f"shown by exploration: by score alone it would not be, because {because}"
    return {
        "explains": "in_top_k" if in_slate else "not_in_top_k",
        "rule": " AND ".join(conditions),
        "conditions": conditions,
        "readable": text,
        "precision": float(result.precision),
        "coverage": float(result.coverage),
    }


def _slate_size(k: Any) -> int:
    """The recorded k (3 when absent, as the predictor's default)."""
    if k is None:
        return 3
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise MalformedRequest(f"inputs.k must be a whole number of at least 1, got {k!r}")
    return k


def unpack_inputs(inputs: dict[str, Any]) -> tuple[list[str], dict[str, Any], dict[str, list[Any]]]:
    """(candidates, per-request values, per-candidate columns) of inputs as the predictor records them
    (serving.predictor.decisions.decision_inputs); `items_mostly` columns are expanded."""
    if "candidates" not in inputs and CONTEXT_REF in inputs:
        raise MalformedRequest(
            f"inputs name item context {inputs[CONTEXT_REF]!r} instead of holding the candidates and their "
            "features: explain the stored decision with `kfloop audit explain REQUEST_ID`, or put the context back "
            "(the audit sink's GET /v1/decisions/{context_id})"
        )
    candidates = inputs.get("candidates")
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise MalformedRequest(
            "inputs must hold candidates (a list of item ids), user and items, as the predictor records them"
        )
    if not candidates:
        raise MalformedRequest("inputs.candidates is empty")
    user, items, mostly = (_object(inputs, name) for name in ("user", "items", "items_mostly"))
    try:
        items.update({name: expand_mostly(name, entry, len(candidates)) for name, entry in mostly.items()})
    except (TypeError, ValueError):
        raise MalformedRequest('inputs.items_mostly entries are {"value": v, "except": [[index, value]]}') from None
    return candidates, user, items


def _object(inputs: dict[str, Any], name: str) -> dict[str, Any]:
    value = inputs.get(name) or {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"inputs.{name} must be an object")
    return dict(value)

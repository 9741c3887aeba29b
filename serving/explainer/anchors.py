"""AnchorTabular rules a person can read, for "why was this item in the slate".

The classifier asks, for one shown item: with a sample's feature values, would the item be among the top k of
this request's candidates? The data the sampler perturbs with is the request's own candidates (so a rule says
what sets the item apart from the alternatives it beat, or that beat it). The answer for the item as it was is
the decision's recorded membership, and every other sample is placed by the same order: the item must outscore
its rival (the k-th best of the other candidates), measured as the recorded gap between them plus the change the
sample's values make to the item's score. Ties and float noise at the edge (within SCORE_TIE) keep the recorded
answer, so the k-th item cannot flip whether it is scored alone or in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kfloop.errors import MalformedRequest
from kfloop.features import names
from serving.explainer.config import AnchorConfig
from serving.explainer.models import VersionModels
from serving.explainer.slate import SCORE_TIE, ShownItem, ShownSlate
from serving.explainer.wording import readable_condition, shown_sentence


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


class TowerScorer:
    """Scores rows AnchorTabular samples, fast: every column of x comes from one raw feature (the layout the
    trainer exports), and every sampled value is one of the candidates' own values, so a sample's x is
    assembled from the candidates' x columns and only the numeric sub-model runs. `check` compares this
    with the full serving model on random samples and refuses a model where it would not hold."""

    def __init__(self, models: VersionModels, table: CandidateTable, x: np.ndarray) -> None:
        self.models, self.table, self.x = models, table, x.astype(np.float32)
        spans = {e["feature"]: (e["start"], e["end"]) for e in models.layout}
        self.spans = [spans[name] for name in table.columns]
        # per anchor column: sorted distinct encoded values, and a candidate row holding each
        self.values, self.rows = [], []
        for j in range(len(table.columns)):
            distinct, first = np.unique(table.matrix[:, j], return_index=True)
            self.values.append(distinct)
            self.rows.append(first)
        self.candidate_scores = self.score(table.matrix)

    def score(self, encoded: np.ndarray) -> np.ndarray:
        encoded = np.atleast_2d(encoded)
        x = np.repeat(self.x[:1], len(encoded), axis=0)
        for j, (start, end) in enumerate(self.spans):
            where = np.searchsorted(self.values[j], encoded[:, j])
            where = np.clip(where, 0, len(self.values[j]) - 1)
            x[:, start:end] = self.x[self.rows[j][where], start:end]
        return self.models.tower_signature(x).astype(np.float64)

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


class TopKClassifier:
    """For one shown item: 1 where the item, with a sample's values, would be among the top k (see the module)."""

    def __init__(self, scorer: TowerScorer, item: ShownItem, scores: np.ndarray) -> None:
        self.scorer, self.row, self.in_top_k = scorer, item.row, item.in_top_k
        self.instance = scorer.table.matrix[item.row]
        # the recorded order's gap to the rival, from the scores that ordered the candidates
        self.gap = None if item.rival is None else float(scores[item.row]) - float(scores[item.rival])

    def __call__(self, encoded: np.ndarray) -> np.ndarray:
        encoded = np.atleast_2d(encoded)
        if self.gap is None:  # every candidate is shown: any item is in the top k
            return np.ones(len(encoded), dtype=int)
        margin = self.scorer.score(encoded) - self.scorer.candidate_scores[self.row] + self.gap
        verdict = np.where(np.abs(margin) <= SCORE_TIE, self.in_top_k, margin > 0)
        verdict[np.all(encoded == self.instance, axis=1)] = self.in_top_k  # the item as it was: as recorded
        return verdict.astype(int)


def explain_anchors(
    config: AnchorConfig, scorer: TowerScorer, slate: ShownSlate, scores: np.ndarray
) -> list[dict[str, Any]]:
    """One anchor per shown item, each with its own classifier (`scores`: the serving model's, which ordered the
    candidates)."""
    from alibi.explainers import AnchorTabular

    table = scorer.table
    explainer = AnchorTabular(
        TopKClassifier(scorer, slate.items[0], scores), table.columns, categorical_names=table.vocab, seed=config.seed
    )
    explainer.fit(table.matrix, disc_perc=tuple(config.percentiles))
    out = []
    for item in slate.items:
        explainer.reset_predictor(TopKClassifier(scorer, item, scores))
        result = explainer.explain(
            table.matrix[item.row],
            threshold=config.threshold,
            batch_size=config.batch_size,
            coverage_samples=config.coverage_samples,
            beam_size=config.beam_size,
            max_anchor_size=config.max_anchor_size,
        )
        if int(np.asarray(result.raw["prediction"]).reshape(-1)[0]) != int(item.in_top_k):
            raise RuntimeError(f"the anchor classifier disagrees with the decision about row {item.row}")
        out.append(anchor_json(result, table.columns, item, slate.k, len(table.matrix), config.threshold))
    return out


def anchor_json(result: Any, columns: list[str], item: ShownItem, k: int, n: int, target: float) -> dict[str, Any]:
    conditions = list(result.anchor)
    precision = float(result.precision)
    readable = [readable_condition(c, columns) for c in conditions]
    return {
        "explains": "in_top_k" if item.in_top_k else "not_in_top_k",
        "rule": " AND ".join(conditions),
        "conditions": conditions,
        "readable": shown_sentence(item, k, n, readable, precision, target),
        "precision": precision,
        "precision_target": target,
        "meets_precision_target": precision >= target,
        "coverage": float(result.coverage),
    }

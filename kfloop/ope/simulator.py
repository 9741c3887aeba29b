"""A contextual slate-bandit simulator fitted on the Open Bandit Dataset, with known ground truth.

Contexts are the OBD user cohorts (distinct combinations of the four hashed user features), drawn with
their frequency in the logs. Clicks follow a logistic model per (cohort u, item a, position j):

    logit P(click) = intercept + item[a] + position[j] + user[u] + interaction[u, a] + logit_shift

The first four are fitted on the logs (ridge logistic regression, numpy only). The interaction is
synthetic: 80 clicks cannot reveal which cohort likes which item, yet a personalised ranker needs
something to learn. It is a random low-rank term built from the user features (so a model that sees
them can learn it), with standard deviation `interaction_scale` on the logit scale (default 0.5; 0 turns
it off), and the intercept is re-centred so that a uniformly random slate keeps the fitted CTR.
`logit_shift` raises or lowers every CTR (OBD's is about 0.4%; tests use more clicks to be informative).

Clicks in different slots are independent given the items shown, so a slot's reward depends only on its
own item: the position-wise estimators in `kfloop.ope.estimators` are unbiased here. `true_value` is the
exact expected clicks per slot of any policy, summed over contexts and its exact propensities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kfloop.data.obd import LOGS
from kfloop.errors import InvalidInput, KfloopError
from kfloop.ope.obd import OBD_N_ITEMS, OBD_N_POSITIONS, ObdLog, load_obd_log
from kfloop.ope.policies import SlatePolicy


@dataclass(frozen=True)
class Cohorts:
    """The distinct user-feature combinations of some logs, each feature's categories coded 0..n-1."""

    keys: np.ndarray  # [cohorts, 4] the hashed feature values
    codes: np.ndarray  # [cohorts, 4] category index within each feature
    n_categories: tuple[int, ...]
    weights: np.ndarray  # share of logged rows per cohort, sums to 1

    @classmethod
    def from_logs(cls, logs: Sequence[ObdLog]) -> Cohorts:
        features = np.concatenate([log.user_features for log in logs]).astype(str)
        keys, counts = np.unique(features, axis=0, return_counts=True)
        codes = np.empty(keys.shape, dtype=np.int64)
        n_categories = []
        for f in range(keys.shape[1]):
            categories, codes[:, f] = np.unique(keys[:, f], return_inverse=True)
            n_categories.append(len(categories))
        return cls(keys, codes, tuple(n_categories), counts / counts.sum())

    @property
    def n_cohorts(self) -> int:
        return len(self.keys)

    def index_of(self, user_features: np.ndarray) -> np.ndarray:
        """Cohort index of each row of [rows, 4] user features (every row must be a known cohort)."""
        lookup = {tuple(key): i for i, key in enumerate(self.keys.tolist())}
        try:
            return np.array([lookup[tuple(row)] for row in np.asarray(user_features).astype(str).tolist()])
        except KeyError as exc:
            raise InvalidInput(f"unknown cohort {exc.args[0]}") from None

    def one_hot(self) -> np.ndarray:
        """[cohorts, sum of n_categories] indicator features, one block per user feature."""
        offsets = np.concatenate([[0], np.cumsum(self.n_categories)[:-1]])
        out = np.zeros((self.n_cohorts, sum(self.n_categories)))
        for f, offset in enumerate(offsets):
            out[np.arange(self.n_cohorts), offset + self.codes[:, f]] = 1.0
        return out


@dataclass(frozen=True)
class ClickModel:
    """logit P(click | cohort, item, position) as a sum of effects (see the module docstring)."""

    intercept: float
    item_effect: np.ndarray  # [items]
    position_effect: np.ndarray  # [positions]
    user_effect: np.ndarray  # [cohorts]
    interaction: np.ndarray  # [cohorts, items]

    def logits(self) -> np.ndarray:
        """[cohorts, items, positions]."""
        per_pair = self.intercept + self.user_effect[:, None] + self.item_effect[None, :] + self.interaction
        return per_pair[:, :, None] + self.position_effect[None, None, :]

    def probabilities(self) -> np.ndarray:
        """[cohorts, items, positions] click probabilities."""
        return 1.0 / (1.0 + np.exp(-self.logits()))


def fit_click_model(
    logs: Sequence[ObdLog],
    cohorts: Cohorts,
    *,
    l2: float = 1.0,
    n_items: int = OBD_N_ITEMS,
    n_positions: int = OBD_N_POSITIONS,
) -> ClickModel:
    """Ridge logistic regression of click on item, position and user-feature effects (no interaction).

    `l2` is the precision of a Gaussian prior on every effect (1.0: effects of about +-1 on the logit scale
    unless the data insist); it keeps items never clicked from running off to minus infinity.
    """
    design, click = _design(logs, cohorts, n_items, n_positions)
    coef = _ridge_logistic(design, click, l2)
    item_end = 1 + n_items
    position_end = item_end + n_positions
    user_coef = coef[position_end:]
    return ClickModel(
        intercept=float(coef[0]),
        item_effect=coef[1:item_end],
        position_effect=coef[item_end:position_end],
        user_effect=cohorts.one_hot() @ user_coef,
        interaction=np.zeros((cohorts.n_cohorts, n_items)),
    )


def with_synthetic_interaction(
    model: ClickModel, cohorts: Cohorts, *, scale: float, dim: int = 4, rng: np.random.Generator
) -> ClickModel:
    """Add a random low-rank cohort x item term with standard deviation `scale` (logit scale).

    Each user-feature category and each item get a random dim-vector; a cohort's vector is the scaled sum
    of its four categories' vectors, so the term is learnable from the user features. The intercept is then
    re-centred so that a uniformly random policy's CTR stays what the fitted model says (the term would
    otherwise raise every CTR, exp being convex).
    """
    category_vectors = rng.normal(size=(sum(cohorts.n_categories), dim))
    cohort_vectors = cohorts.one_hot() @ category_vectors / np.sqrt(len(cohorts.n_categories))
    item_vectors = rng.normal(size=(len(model.item_effect), dim))
    interaction = scale * cohort_vectors @ item_vectors.T / np.sqrt(dim)
    with_interaction = replace(model, interaction=interaction)
    target = _uniform_ctr(model.probabilities(), cohorts.weights)
    low, high = -10.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2
        shifted = replace(with_interaction, intercept=model.intercept + middle)
        if _uniform_ctr(shifted.probabilities(), cohorts.weights) < target:
            low = middle
        else:
            high = middle
    return replace(with_interaction, intercept=model.intercept + (low + high) / 2)


def _uniform_ctr(click_probability: np.ndarray, weights: np.ndarray) -> float:
    return float(click_probability.mean(axis=(1, 2)) @ weights)


@dataclass(frozen=True)
class SyntheticLog:
    """A generated log, one row per slot shown, in the OBD layout (positions 0-based)."""

    decision: np.ndarray  # decision (slate) id per row
    context: np.ndarray  # cohort index
    item: np.ndarray
    position: np.ndarray
    click: np.ndarray  # float 0/1
    pscore: np.ndarray  # the logging policy's probability of this item at this position

    @property
    def n_rows(self) -> int:
        return len(self.item)


class BanditSimulator:
    """Draw logs from any slate policy and compute any policy's exact value, over a fixed context table.

    A policy acts on one score row per context: `scores` is [n_contexts, n_items] (e.g. a model's scores
    for each cohort, or `oracle_scores()`).
    """

    def __init__(
        self, click_probability: np.ndarray, context_weights: np.ndarray, context_features: np.ndarray
    ) -> None:
        self.click_probability = np.asarray(click_probability, dtype=np.float64)
        self.context_weights = np.asarray(context_weights, dtype=np.float64)
        self.context_features = np.asarray(context_features, dtype=np.float64)
        if self.click_probability.ndim != 3 or len(self.click_probability) != len(self.context_weights):
            raise InvalidInput("click_probability must be [contexts, items, positions], one per context weight")

    @classmethod
    def from_obd(
        cls,
        data_dir: Path,
        *,
        logs: Sequence[str] = LOGS,
        interaction_scale: float = 0.5,
        interaction_dim: int = 4,
        logit_shift: float = 0.0,
        l2: float = 1.0,
        seed: int = 0,
    ) -> BanditSimulator:
        """Fit on the OBD logs under `data_dir` (both by default) and add the seeded synthetic interaction."""
        obd_logs = [load_obd_log(data_dir, log) for log in logs]
        cohorts = Cohorts.from_logs(obd_logs)
        model = fit_click_model(obd_logs, cohorts, l2=l2)
        model = with_synthetic_interaction(
            model, cohorts, scale=interaction_scale, dim=interaction_dim, rng=np.random.default_rng(seed)
        )
        model = replace(model, intercept=model.intercept + logit_shift)
        return cls(model.probabilities(), cohorts.weights, cohorts.one_hot())

    @property
    def n_contexts(self) -> int:
        return self.click_probability.shape[0]

    @property
    def n_items(self) -> int:
        return self.click_probability.shape[1]

    @property
    def k(self) -> int:
        return self.click_probability.shape[2]

    def oracle_scores(self) -> np.ndarray:
        """[contexts, items] true click logits at the first position: ranking by them is the best ranking."""
        p = self.click_probability[:, :, 0]
        return np.log(p) - np.log1p(-p)

    def propensities(self, policy: SlatePolicy, scores: np.ndarray) -> np.ndarray:
        """[contexts, items, positions]: the policy's exact probability of each item at each position."""
        return policy.position_propensities(self._check_scores(scores), self.k)

    def value(self, propensities: np.ndarray) -> float:
        """Exact expected clicks per slot of a policy given its propensity table (see `propensities`)."""
        per_context = np.einsum("cij,cij->c", propensities, self.click_probability) / self.k
        return float(per_context @ self.context_weights)

    def true_value(self, policy: SlatePolicy, scores: np.ndarray) -> float:
        return self.value(self.propensities(policy, scores))

    def generate_log(
        self, policy: SlatePolicy, scores: np.ndarray, n_decisions: int, seed: int | np.random.Generator
    ) -> SyntheticLog:
        """n_decisions slates of k slots from `policy`, each slot clicked independently with its probability."""
        if n_decisions < 1:
            raise InvalidInput(f"n_decisions must be at least 1, got {n_decisions}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        scores = self._check_scores(scores)
        table = self.propensities(policy, scores)
        contexts = rng.choice(self.n_contexts, size=n_decisions, p=self.context_weights)
        slates = policy.sample_slate(scores[contexts], self.k, rng)
        context = np.repeat(contexts, self.k)
        item = slates.reshape(-1)
        position = np.tile(np.arange(self.k), n_decisions)
        click = rng.random(len(item)) < self.click_probability[context, item, position]
        return SyntheticLog(
            decision=np.repeat(np.arange(n_decisions), self.k),
            context=context,
            item=item,
            position=position,
            click=click.astype(np.float64),
            pscore=table[context, item, position],
        )

    def _check_scores(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (self.n_contexts, self.n_items):
            raise InvalidInput(f"scores must be [{self.n_contexts}, {self.n_items}], got {scores.shape}")
        return scores


def _design(logs: Sequence[ObdLog], cohorts: Cohorts, n_items: int, n_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """[rows, 1 + items + positions + user categories] indicators, and the clicks."""
    item = np.concatenate([log.item for log in logs])
    position = np.concatenate([log.position for log in logs])
    click = np.concatenate([log.click for log in logs])
    cohort = cohorts.index_of(np.concatenate([log.user_features for log in logs]))
    rows = np.arange(len(item))
    blocks = [
        np.ones((len(item), 1)),
        _one_hot(rows, item, n_items),
        _one_hot(rows, position, n_positions),
        cohorts.one_hot()[cohort],
    ]
    return np.hstack(blocks), click


def _one_hot(rows: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    if values.min() < 0 or values.max() >= width:
        raise InvalidInput(f"values out of range 0..{width - 1}")
    out = np.zeros((len(rows), width))
    out[rows, values] = 1.0
    return out


def _ridge_logistic(design: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 100) -> np.ndarray:
    """Newton's method for logistic regression with an L2 penalty on all but the intercept (column 0)."""
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    coef = np.zeros(design.shape[1])
    mean = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    coef[0] = np.log(mean / (1 - mean))
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ coef)))
        gradient = design.T @ (p - y) + penalty * coef
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        coef -= step
        if np.max(np.abs(step)) < 1e-9:
            return coef
    raise KfloopError("the click model did not converge; raise l2")

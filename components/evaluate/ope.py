"""Off-policy value of the candidate's policy on the eval window, next to a reference, with kfloop.ope.

The candidate's policy is the exploration policy serving will wrap it in (epsilon-greedy or softmax over
its scores at the serving position), over the catalog of the window; its exact position propensities come
from `kfloop.ope.policies`. Each logged impression (eval split, with a logged propensity, at a position
within the slate, of a catalog item) is one row. The reference is the production model under the same
exploration policy, or, before any production model exists, the logging policy itself (w = 1: its value is
the logged click rate). DR's reward model is the candidate's P(click) at each position (trained on the
train split, so not on the rows it is evaluated on), shared by both policies. IPS, SNIPS and DR come from
`kfloop.ope.estimate_difference`: candidate, reference and their paired difference, 95% bootstrap
intervals resampling whole requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.evaluate.config import EvaluateConfig


@dataclass(frozen=True)
class OpeRows:
    """The logged rows off-policy evaluation uses, indexed into the candidate grid."""

    context: np.ndarray  # request index into the grid
    item: np.ndarray  # item index into the catalog
    position: np.ndarray  # 0-based
    reward: np.ndarray
    pscore: np.ndarray
    request: np.ndarray  # request ids: rows of one request resample together
    dropped: dict[str, int]
    served_by: np.ndarray  # the model version that served each row (None: not recorded)
    policy: np.ndarray  # the exploration policy it was served with (None: not recorded)


def ope_rows(
    evaluation: pd.DataFrame, candidates: pd.DataFrame, slate_size: int
) -> tuple[OpeRows, list[str], list[str]]:
    """Rows, request order and catalog order of the grid (request-major, catalog order within a request)."""
    requests = list(dict.fromkeys(candidates["request_id"]))
    n_items = len(candidates) // max(len(requests), 1)
    catalog = list(candidates["item_id"].iloc[:n_items])
    request_index = {r: i for i, r in enumerate(requests)}
    item_index = {it: i for i, it in enumerate(catalog)}
    shown = evaluation[evaluation["signal"] == "implicit"]
    dropped = {"explicit": int((evaluation["signal"] != "implicit").sum())}
    keep = shown["propensity"].notna().to_numpy()
    dropped["no_propensity"] = int((~keep).sum())
    position = shown["position"].fillna(0).to_numpy(dtype=np.int64)
    in_slate = (position >= 1) & (position <= slate_size)
    dropped["position_beyond_slate"] = int((keep & ~in_slate).sum())
    keep &= in_slate
    known = shown["item_id"].isin(item_index).to_numpy() & shown["request_id"].isin(request_index).to_numpy()
    dropped["not_in_catalog"] = int((keep & ~known).sum())
    keep &= known
    rows = shown[keep]
    return (
        OpeRows(
            context=rows["request_id"].map(request_index).to_numpy(dtype=np.int64),
            item=rows["item_id"].map(item_index).to_numpy(dtype=np.int64),
            position=rows["position"].to_numpy(dtype=np.int64) - 1,
            reward=rows["label"].to_numpy(dtype=float),
            pscore=rows["propensity"].to_numpy(dtype=float),
            request=rows["request_id"].to_numpy(),
            dropped=dropped,
            served_by=_column(rows, "model_version"),
            policy=_column(rows, "policy"),
        ),
        requests,
        catalog,
    )


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), None, dtype=object)
    return rows[name].astype(object).where(rows[name].notna(), None).to_numpy()


def exploration_policy(config: EvaluateConfig) -> Any:
    from kfloop.ope import EpsilonGreedy, Softmax

    return EpsilonGreedy(config.epsilon) if config.exploration == "epsilon_greedy" else Softmax(config.temperature)


def reward_grid(candidate_logits: np.ndarray, position_bias: list[float], serving_position: int, k: int) -> np.ndarray:
    """q^(x, a, j): the candidate's P(click) of each grid item at each position 1..k, [requests, items, k]."""
    relevance = candidate_logits - position_bias[serving_position if serving_position < len(position_bias) else 0]
    biases = np.array([position_bias[j] if j < len(position_bias) else position_bias[0] for j in range(1, k + 1)])
    return 1.0 / (1.0 + np.exp(-(relevance[:, :, None] + biases[None, None, :])))


def off_policy(
    rows: OpeRows,
    candidate_logits: np.ndarray,
    reference_logits: np.ndarray | None,
    q_grid: np.ndarray,
    config: EvaluateConfig,
    reference_version: str | None = None,
) -> dict[str, Any]:
    """{"rows": n, "clicks": c, "dropped": {...}, "served_check": {...} (with a reference model),
    "ips"|"snips"|"dr": {candidate, reference, difference}}."""
    from kfloop.ope import estimate_difference, expected_reward, logged_propensity

    policy = exploration_policy(config)
    k = config.slate_size
    target_p = policy.position_propensities(candidate_logits, k)
    target = logged_propensity(target_p, rows.item, rows.position, context=rows.context)
    q_logged = q_grid[rows.context, rows.item, rows.position]
    q_target = expected_reward(target_p, q_grid, rows.position, context=rows.context)
    if reference_logits is None:
        reference, q_reference = rows.pscore, q_logged
    else:
        reference_p = policy.position_propensities(reference_logits, k)
        recomputed = logged_propensity(reference_p, rows.item, rows.position, context=rows.context)
        own = served_by(rows, reference_version, config.exploration)
        # on its own rows the reference is the logging policy: weight 1 and, as for the logging policy, DR's
        # model term at what was served
        reference = np.where(own, rows.pscore, recomputed)
        expected = expected_reward(reference_p, q_grid, rows.position, context=rows.context)
        q_reference = np.where(own, q_logged, expected)
    out: dict[str, Any] = {"rows": len(rows.reward), "clicks": int(rows.reward.sum()), "dropped": rows.dropped}
    if reference_logits is not None:
        out["served_check"] = served_check(recomputed[own], rows.pscore[own], reference_version)
    for estimator in ("ips", "snips", "dr"):
        comparison = estimate_difference(
            rows.reward,
            rows.pscore,
            target,
            reference,
            estimator=estimator,
            q_hat=q_logged if estimator == "dr" else None,
            q_hat_target=q_target if estimator == "dr" else None,
            q_hat_reference=q_reference if estimator == "dr" else None,
            slate_id=rows.request,
            n_boot=config.bootstrap_resamples,
            seed=config.seed,
        )
        out[estimator] = {
            "candidate": comparison.target.to_dict(),
            "reference": comparison.reference.to_dict(),
            "difference": comparison.difference.to_dict(),
        }
    return out


DISAGREE = 0.05
"""A recomputed propensity more than 5% (relative) from the logged one disagrees with what was served."""


def served_by(rows: OpeRows, version: str | None, exploration: str) -> np.ndarray:
    """Rows that `version` served itself under this exploration policy."""
    if version is None:
        return np.zeros(len(rows.reward), dtype=bool)
    return (rows.served_by == version) & (rows.policy == exploration)


def served_check(recomputed: np.ndarray, logged: np.ndarray, version: str | None) -> dict[str, Any]:
    """How well the reference's policy recomputed on the offline features reproduces what it served: weights
    recomputed / logged on its own rows (all 1 without training/serving skew)."""
    n = len(logged)
    if n == 0:
        return {"version": version, "rows": 0}
    weights = recomputed / logged
    ess = float(weights.sum() ** 2 / (weights**2).sum()) if weights.any() else 0.0
    return {
        "version": version,
        "rows": n,
        "ess": ess,
        "ess_share": ess / n,
        "max_weight": float(weights.max()),
        "disagreeing": int((np.abs(weights - 1.0) > DISAGREE).sum()),
    }

"""Off-policy estimators (IPS, SNIPS, DR) of a slate policy's value from a logged feedback window.

The value estimated, V(pi), is the expected reward per impression slot: the chance that a slot filled by
policy pi gets a click (for 0/1 rewards), i.e. a click-through rate comparable to the logged CTR.
Precisely, with one row per shown (decision x, item a, position j) and reward r:

    V(pi) = E over logged rows of  sum_a pi(a at j | x) E[r | x, a, j]

so positions count as often as they occur in the log; when every decision fills all K slots this is
(expected clicks per slate) / K. The rows are weighed "position-wise" (the independent formulation of Open
Bandit Pipeline): w = pi_e(a at j | x) / pi_b(a at j | x), the target's and the logging policy's probability
of the logged item at its logged position (`kfloop.ope.policies`: `position_propensities`). This is
unbiased when a slot's reward depends on the item shown there (not on the other slots' items), and when
the logging policy gave every (item, position) the target can choose a non-zero probability.

    IPS    mean(w * r)
    SNIPS  sum(w * r) / sum(w)                       (biased, lower variance; equal to IPS when mean(w) = 1)
    DR     mean(q_target + w * (r - q_logged))       q_logged = q^(x, a, j) of a reward model,
                                                     q_target = sum_a' pi_e(a' at j | x) q^(x, a', j)

Each returns an `Estimate` with a percentile bootstrap interval (rows of one decision resampled together
when `slate_id` is given), and evidence diagnostics with an explicit `low_evidence` flag and its reasons:
with clicks as rare as 0.4%, most windows cannot tell policies apart, and saying so is the answer.
`estimate_difference` compares two policies on the same rows with a paired bootstrap, which is what a
blessing gate should decide on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from kfloop.errors import InvalidInput
from kfloop.ope.bootstrap import CiOptions, LoggedRows, Terms, as_vector, bootstrap_ratios, make_estimate
from kfloop.ope.results import DEFAULT_THRESHOLDS, Comparison, Estimate, EvidenceThresholds

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Comparison",
    "Estimate",
    "EstimatorName",
    "EvidenceThresholds",
    "dr",
    "estimate_difference",
    "expected_reward",
    "ips",
    "logged_propensity",
    "snips",
]

EstimatorName = Literal["ips", "snips", "dr"]


def ips(
    reward: np.ndarray,
    pscore: np.ndarray,
    target_pscore: np.ndarray,
    *,
    slate_id: np.ndarray | None = None,
    clip: float | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int | np.random.Generator = 0,
    thresholds: EvidenceThresholds = DEFAULT_THRESHOLDS,
) -> Estimate:
    """Inverse propensity scoring: mean(w * r). Unbiased (without `clip`), high variance.

    `pscore` and `target_pscore` are the logging and target policies' probabilities of each logged item at
    its logged position; `clip` caps the weights (biased toward the logging policy's value, less variance).
    """
    return _single("ips", reward, pscore, target_pscore, None, None, slate_id, clip, n_boot, ci_level, seed, thresholds)


def snips(
    reward: np.ndarray,
    pscore: np.ndarray,
    target_pscore: np.ndarray,
    *,
    slate_id: np.ndarray | None = None,
    clip: float | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int | np.random.Generator = 0,
    thresholds: EvidenceThresholds = DEFAULT_THRESHOLDS,
) -> Estimate:
    """Self-normalized IPS: sum(w * r) / sum(w). Consistent, slightly biased, usually less variance."""
    return _single(
        "snips", reward, pscore, target_pscore, None, None, slate_id, clip, n_boot, ci_level, seed, thresholds
    )


def dr(
    reward: np.ndarray,
    pscore: np.ndarray,
    target_pscore: np.ndarray,
    q_hat: np.ndarray,
    q_hat_target: np.ndarray,
    *,
    slate_id: np.ndarray | None = None,
    clip: float | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int | np.random.Generator = 0,
    thresholds: EvidenceThresholds = DEFAULT_THRESHOLDS,
) -> Estimate:
    """Doubly robust: mean(q_hat_target + w * (r - q_hat)).

    `q_hat` is a reward model's prediction for the logged item at its logged position; `q_hat_target` the
    target policy's expected prediction at that position, sum_a pi_e(a at j | x) q^(x, a, j) (see
    `expected_reward`). Unbiased when either the weights or the reward model are right; the better the
    reward model, the narrower the interval. Fit the reward model on other rows than the evaluated ones.
    """
    return _single(
        "dr", reward, pscore, target_pscore, q_hat, q_hat_target, slate_id, clip, n_boot, ci_level, seed, thresholds
    )


def estimate_difference(
    reward: np.ndarray,
    pscore: np.ndarray,
    target_pscore: np.ndarray,
    reference_pscore: np.ndarray,
    *,
    estimator: EstimatorName = "dr",
    q_hat: np.ndarray | None = None,
    q_hat_target: np.ndarray | None = None,
    q_hat_reference: np.ndarray | None = None,
    slate_id: np.ndarray | None = None,
    clip: float | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int | np.random.Generator = 0,
    thresholds: EvidenceThresholds = DEFAULT_THRESHOLDS,
) -> Comparison:
    """Target vs reference policy on the same logged rows, with one paired bootstrap for all three numbers.

    Pairing matters: both values move together with the sample, so the difference's interval is much
    narrower than the two separate intervals suggest. For the logging policy as reference, pass
    `reference_pscore = pscore` (w = 1) and, for DR, `q_hat_reference = q_hat`: its value is then the logged
    mean reward, unbiased, and no logging distribution over all items is needed. `difference.low_evidence` is set
    when either policy's evidence is low; its reasons say which. Same seed, same resamples: `target` and
    `reference` equal what `ips`/`snips`/`dr` return for each policy alone.
    """
    if estimator not in ("ips", "snips", "dr"):
        raise InvalidInput(f"estimator must be 'ips', 'snips' or 'dr', got {estimator!r}")
    rows = LoggedRows.check(reward, pscore, slate_id)
    if estimator == "dr" and (q_hat is None or q_hat_target is None or q_hat_reference is None):
        raise InvalidInput("estimator 'dr' needs q_hat, q_hat_target and q_hat_reference")
    target = _Policy.check(rows, "target_pscore", target_pscore, clip, q_hat, q_hat_target, estimator)
    reference = _Policy.check(rows, "reference_pscore", reference_pscore, clip, q_hat, q_hat_reference, estimator)
    ci = CiOptions.check(n_boot, ci_level, seed)
    resampled = bootstrap_ratios(rows, [target.terms, reference.terms], ci)
    target_estimate, reference_estimate = (
        make_estimate(estimator, rows, policy.weight, policy.terms.value(), draws, ci, clip, thresholds)
        for policy, draws in zip((target, reference), resampled, strict=True)
    )
    difference = make_estimate(
        f"{estimator}_difference",
        rows,
        target.weight,
        target_estimate.value - reference_estimate.value,
        resampled[0] - resampled[1],
        ci,
        clip,
        thresholds,
    )
    return Comparison(
        target=target_estimate,
        reference=reference_estimate,
        difference=_with_both_policies_evidence(difference, target_estimate, reference_estimate),
    )


def _with_both_policies_evidence(difference: Estimate, target: Estimate, reference: Estimate) -> Estimate:
    """A difference is as weakly evidenced as its weaker side: its diagnostics are the worse of the two, and
    its reasons say which policy each is about."""
    reasons = tuple(f"target: {r}" for r in target.reasons) + tuple(f"reference: {r}" for r in reference.reasons)
    return replace(
        difference,
        ess=min(target.ess, reference.ess),
        effective_rewards=min(target.effective_rewards, reference.effective_rewards),
        max_weight=max(target.max_weight, reference.max_weight),
        low_evidence=bool(reasons),
        reasons=reasons,
    )


def logged_propensity(
    propensities: np.ndarray, item: np.ndarray, position: np.ndarray, context: np.ndarray | None = None
) -> np.ndarray:
    """Each row's probability of its logged item at its logged (0-based) position under a policy.

    `propensities` is [rows, n_items, k] (one matrix per row), or [contexts, n_items, k] with `context`
    giving each row's context index (rows of one decision share their context's matrix).
    """
    rows = _row_index(propensities, item, context)
    return propensities[rows, np.asarray(item), np.asarray(position)]


def expected_reward(
    propensities: np.ndarray, q_hat: np.ndarray, position: np.ndarray, context: np.ndarray | None = None
) -> np.ndarray:
    """sum_a pi(a at j | x) q^(x, a, j) for each row's context x and position j (DR's q_hat_target).

    `propensities` and `q_hat` are both [rows or contexts, n_items, k]; `context` as in `logged_propensity`.
    """
    if np.shape(q_hat) != np.shape(propensities):
        raise InvalidInput(f"q_hat shape {np.shape(q_hat)} differs from propensities {np.shape(propensities)}")
    rows = _row_index(propensities, position, context)
    position = np.asarray(position)
    return np.einsum("ra,ra->r", propensities[rows, :, position], np.asarray(q_hat)[rows, :, position])


def _row_index(propensities: np.ndarray, like: np.ndarray, context: np.ndarray | None) -> np.ndarray:
    if np.ndim(propensities) != 3:
        raise InvalidInput(f"propensities must be [rows, n_items, k], got shape {np.shape(propensities)}")
    if context is not None:
        return np.asarray(context)
    if len(propensities) != len(np.asarray(like)):
        raise InvalidInput("without `context`, propensities need one [n_items, k] matrix per row")
    return np.arange(len(propensities))


# ---- internals -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Policy:
    weight: np.ndarray
    terms: Terms

    @classmethod
    def check(
        cls,
        rows: LoggedRows,
        name: str,
        target_pscore: Any,
        clip: float | None,
        q_hat: Any,
        q_hat_target: Any,
        estimator: str,
    ) -> _Policy:
        target = as_vector(name, target_pscore, length=len(rows.reward))
        if np.any(target < 0) or np.any(target > 1):
            raise InvalidInput(f"{name} must be in [0, 1]")
        if clip is not None and not clip > 0:
            raise InvalidInput(f"clip must be positive, got {clip}")
        weight = target / rows.pscore
        if clip is not None:
            weight = np.minimum(weight, clip)
        ones = np.ones_like(weight)
        if estimator == "ips":
            terms = Terms(weight * rows.reward, ones)
        elif estimator == "snips":
            terms = Terms(weight * rows.reward, weight)
        else:
            q_logged = as_vector("q_hat", q_hat, length=len(rows.reward))
            q_target = as_vector(f"q_hat for {name}", q_hat_target, length=len(rows.reward))
            terms = Terms(q_target + weight * (rows.reward - q_logged), ones)
        return cls(weight, terms)


def _single(
    estimator: str,
    reward: Any,
    pscore: Any,
    target_pscore: Any,
    q_hat: Any,
    q_hat_target: Any,
    slate_id: Any,
    clip: float | None,
    n_boot: int,
    ci_level: float,
    seed: int | np.random.Generator,
    thresholds: EvidenceThresholds,
) -> Estimate:
    rows = LoggedRows.check(reward, pscore, slate_id)
    policy = _Policy.check(rows, "target_pscore", target_pscore, clip, q_hat, q_hat_target, estimator)
    ci = CiOptions.check(n_boot, ci_level, seed)
    (draws,) = bootstrap_ratios(rows, [policy.terms], ci)
    return make_estimate(estimator, rows, policy.weight, policy.terms.value(), draws, ci, clip, thresholds)

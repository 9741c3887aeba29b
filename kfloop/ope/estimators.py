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

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from kfloop.errors import InvalidInput

EstimatorName = Literal["ips", "snips", "dr"]
_CELLS_PER_CHUNK = 2_000_000


@dataclass(frozen=True)
class EvidenceThresholds:
    """When an estimate is flagged `low_evidence` (any one rule suffices)."""

    min_rewards: int = 50
    """Fewer logged positive rewards than this. 50 clicks put an on-policy CTR's 95% interval at about
    +-28% of its value; fewer cannot separate policies a few percent apart."""
    min_effective_rewards: float = 30.0
    """Fewer "effective rewards" than this: (sum |w r|)^2 / sum (w r)^2, the number of equally weighted
    rewards that would carry as much information as the weighted ones do (= clicks when w = 1). A few
    heavily weighted clicks can carry the whole estimate even when many clicks were logged."""
    min_ess: float = 1000.0
    """Kish effective sample size (sum w)^2 / sum w^2 below this many rows: the target policy differs so
    much from the logging policy that few logged rows inform it."""


DEFAULT_THRESHOLDS = EvidenceThresholds()


@dataclass(frozen=True)
class Estimate:
    """An off-policy value estimate with its bootstrap interval and evidence diagnostics."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    ci_level: float
    n: int  # logged rows
    n_decisions: int  # resampling units: distinct slate ids, else rows
    n_rewards: int  # rows with a positive reward (clicks)
    ess: float  # Kish effective sample size of the importance weights
    effective_rewards: float
    max_weight: float
    clip: float | None
    low_evidence: bool
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        """The low-evidence reasons as one sentence ("" when the evidence suffices)."""
        return "; ".join(self.reasons)

    def covers(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Comparison:
    """Two policies' estimates on the same rows and their difference (target - reference), paired."""

    target: Estimate
    reference: Estimate
    difference: Estimate


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
    rows = _LoggedRows.check(reward, pscore, slate_id)
    if estimator == "dr" and (q_hat is None or q_hat_target is None or q_hat_reference is None):
        raise InvalidInput("estimator 'dr' needs q_hat, q_hat_target and q_hat_reference")
    target = _Policy.check(rows, "target_pscore", target_pscore, clip, q_hat, q_hat_target, estimator)
    reference = _Policy.check(rows, "reference_pscore", reference_pscore, clip, q_hat, q_hat_reference, estimator)
    ci = _CiOptions.check(n_boot, ci_level, seed)
    resampled = _bootstrap_ratios(rows, [target.terms, reference.terms], ci)
    estimates = [
        _make_estimate(estimator, rows, policy, policy.terms.value(), draws, ci, clip, thresholds)
        for policy, draws in zip((target, reference), resampled, strict=True)
    ]
    difference = _make_estimate(
        f"{estimator}_difference",
        rows,
        target,
        estimates[0].value - estimates[1].value,
        resampled[0] - resampled[1],
        ci,
        clip,
        thresholds,
    )
    reasons = tuple(f"target: {r}" for r in estimates[0].reasons) + tuple(
        f"reference: {r}" for r in estimates[1].reasons
    )
    difference = replace(
        difference,
        ess=min(estimates[0].ess, estimates[1].ess),
        effective_rewards=min(estimates[0].effective_rewards, estimates[1].effective_rewards),
        max_weight=max(estimates[0].max_weight, estimates[1].max_weight),
        low_evidence=bool(reasons),
        reasons=reasons,
    )
    return Comparison(target=estimates[0], reference=estimates[1], difference=difference)


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


# ---- internals ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LoggedRows:
    reward: np.ndarray
    pscore: np.ndarray
    cluster: np.ndarray  # resampling unit of each row, 0..n_clusters-1
    n_clusters: int

    @classmethod
    def check(cls, reward: Any, pscore: Any, slate_id: Any) -> _LoggedRows:
        reward = _vector("reward", reward)
        pscore = _vector("pscore", pscore, length=len(reward))
        if np.any(pscore <= 0) or np.any(pscore > 1):
            raise InvalidInput("pscore must be in (0, 1]: the logging policy must have shown each logged item")
        if slate_id is None:
            cluster, n_clusters = np.arange(len(reward)), len(reward)
        else:
            ids = np.asarray(slate_id)
            if ids.shape != reward.shape:
                raise InvalidInput(f"slate_id has shape {ids.shape}, reward {reward.shape}")
            uniques, cluster = np.unique(ids, return_inverse=True)
            n_clusters = len(uniques)
        return cls(reward, pscore, cluster.reshape(-1), n_clusters)


@dataclass(frozen=True)
class _Terms:
    """Per-row numerator and denominator: the estimate is sum(num) / sum(den) over the (resampled) rows."""

    num: np.ndarray
    den: np.ndarray

    def value(self) -> float:
        den = self.den.sum()
        return float(self.num.sum() / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class _Policy:
    weight: np.ndarray
    terms: _Terms

    @classmethod
    def check(
        cls,
        rows: _LoggedRows,
        name: str,
        target_pscore: Any,
        clip: float | None,
        q_hat: Any,
        q_hat_target: Any,
        estimator: str,
    ) -> _Policy:
        target = _vector(name, target_pscore, length=len(rows.reward))
        if np.any(target < 0) or np.any(target > 1):
            raise InvalidInput(f"{name} must be in [0, 1]")
        if clip is not None and not clip > 0:
            raise InvalidInput(f"clip must be positive, got {clip}")
        weight = target / rows.pscore
        if clip is not None:
            weight = np.minimum(weight, clip)
        ones = np.ones_like(weight)
        if estimator == "ips":
            terms = _Terms(weight * rows.reward, ones)
        elif estimator == "snips":
            terms = _Terms(weight * rows.reward, weight)
        else:
            q_logged = _vector("q_hat", q_hat, length=len(rows.reward))
            q_target = _vector(f"q_hat for {name}", q_hat_target, length=len(rows.reward))
            terms = _Terms(q_target + weight * (rows.reward - q_logged), ones)
        return cls(weight, terms)


@dataclass(frozen=True)
class _CiOptions:
    n_boot: int
    ci_level: float
    rng: np.random.Generator

    @classmethod
    def check(cls, n_boot: int, ci_level: float, seed: int | np.random.Generator) -> _CiOptions:
        if n_boot < 100:
            raise InvalidInput(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")
        if not 0 < ci_level < 1:
            raise InvalidInput(f"ci_level must be in (0, 1), got {ci_level}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return cls(n_boot, ci_level, rng)


def _vector(name: str, values: Any, length: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInput(f"{name} must be a non-empty 1-d array, got shape {array.shape}")
    if length is not None and array.size != length:
        raise InvalidInput(f"{name} has {array.size} rows, reward has {length}")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} must be finite")
    return array


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
    rows = _LoggedRows.check(reward, pscore, slate_id)
    policy = _Policy.check(rows, "target_pscore", target_pscore, clip, q_hat, q_hat_target, estimator)
    ci = _CiOptions.check(n_boot, ci_level, seed)
    (draws,) = _bootstrap_ratios(rows, [policy.terms], ci)
    return _make_estimate(estimator, rows, policy, policy.terms.value(), draws, ci, clip, thresholds)


def _bootstrap_ratios(rows: _LoggedRows, terms: list[_Terms], ci: _CiOptions) -> list[np.ndarray]:
    """For each terms, n_boot resampled sum(num) / sum(den), all from the same resamples (paired).

    Resamples whole clusters (decisions): their sums are pre-aggregated, then each resample draws
    n_clusters cluster indices with replacement; chunked so that memory stays near _CELLS_PER_CHUNK.
    """
    columns = [
        np.bincount(rows.cluster, weights=array, minlength=rows.n_clusters) for t in terms for array in (t.num, t.den)
    ]
    chunk = max(1, _CELLS_PER_CHUNK // rows.n_clusters)
    sums = np.empty((ci.n_boot, len(columns)))
    for start in range(0, ci.n_boot, chunk):
        stop = min(start + chunk, ci.n_boot)
        picks = ci.rng.integers(0, rows.n_clusters, size=(stop - start, rows.n_clusters))
        for c, column in enumerate(columns):
            sums[start:stop, c] = column[picks].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sums[:, 0::2] / sums[:, 1::2]
    ratios[~np.isfinite(ratios)] = np.nan
    return [ratios[:, i] for i in range(len(terms))]


def _make_estimate(
    estimator: str,
    rows: _LoggedRows,
    policy: _Policy,
    value: float,
    draws: np.ndarray,
    ci: _CiOptions,
    clip: float | None,
    thresholds: EvidenceThresholds,
) -> Estimate:
    tail = (1 - ci.ci_level) / 2
    if np.all(np.isnan(draws)):
        low = high = float("nan")
    else:
        low, high = (float(x) for x in np.nanquantile(draws, [tail, 1 - tail]))
    weight, reward = policy.weight, rows.reward
    ess = _kish(weight)
    effective_rewards = _kish(np.abs(weight * reward))
    n_rewards = int(np.count_nonzero(reward > 0))
    reasons = _evidence_reasons(n_rewards, effective_rewards, ess, len(reward), weight, thresholds)
    return Estimate(
        estimator=estimator,
        value=float(value),
        ci_low=low,
        ci_high=high,
        ci_level=ci.ci_level,
        n=len(reward),
        n_decisions=rows.n_clusters,
        n_rewards=n_rewards,
        ess=ess,
        effective_rewards=effective_rewards,
        max_weight=float(weight.max()),
        clip=clip,
        low_evidence=bool(reasons),
        reasons=reasons,
    )


def _kish(values: np.ndarray) -> float:
    """(sum v)^2 / sum v^2: how many equal values would carry as much information (0 if all are 0)."""
    squares = float(np.square(values).sum())
    return float(values.sum()) ** 2 / squares if squares > 0 else 0.0


def _evidence_reasons(
    n_rewards: int, effective_rewards: float, ess: float, n: int, weight: np.ndarray, thresholds: EvidenceThresholds
) -> tuple[str, ...]:
    reasons = []
    if not np.any(weight > 0):
        reasons.append("the target policy gives no probability to any logged item at its position")
    if n_rewards < thresholds.min_rewards:
        reasons.append(f"only {n_rewards} positive rewards logged (fewer than {thresholds.min_rewards})")
    if effective_rewards < thresholds.min_effective_rewards:
        reasons.append(
            f"after weighting, the rewards carry as much evidence as {effective_rewards:.1f} equally weighted "
            f"ones (fewer than {thresholds.min_effective_rewards:g})"
        )
    if ess < thresholds.min_ess:
        reasons.append(f"effective sample size {ess:.0f} of {n} rows (below {thresholds.min_ess:g})")
    return tuple(reasons)

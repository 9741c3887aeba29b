"""The estimators' shared machinery: checked logged rows, per-row ratio terms, the cluster bootstrap of
sum(num) / sum(den), and the `Estimate` (interval and evidence diagnostics) built from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kfloop.errors import InvalidInput
from kfloop.ope.results import Estimate, EvidenceThresholds

_CELLS_PER_CHUNK = 2_000_000


@dataclass(frozen=True)
class LoggedRows:
    """A logged window's rewards and logging propensities, checked, with each row's resampling unit."""

    reward: np.ndarray
    pscore: np.ndarray
    cluster: np.ndarray  # resampling unit of each row, 0..n_clusters-1
    n_clusters: int

    @classmethod
    def check(cls, reward: Any, pscore: Any, slate_id: Any) -> LoggedRows:
        reward = as_vector("reward", reward)
        pscore = as_vector("pscore", pscore, length=len(reward))
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
class Terms:
    """Per-row numerator and denominator: the estimate is sum(num) / sum(den) over the (resampled) rows."""

    num: np.ndarray
    den: np.ndarray

    def value(self) -> float:
        den = self.den.sum()
        return float(self.num.sum() / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class CiOptions:
    """How the bootstrap interval is drawn (checked)."""

    n_boot: int
    ci_level: float
    rng: np.random.Generator

    @classmethod
    def check(cls, n_boot: int, ci_level: float, seed: int | np.random.Generator) -> CiOptions:
        if n_boot < 100:
            raise InvalidInput(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")
        if not 0 < ci_level < 1:
            raise InvalidInput(f"ci_level must be in (0, 1), got {ci_level}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return cls(n_boot, ci_level, rng)


def as_vector(name: str, values: Any, length: int | None = None) -> np.ndarray:
    """`values` as a finite, non-empty 1-d float array (of `length` rows, when given); errors name it."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInput(f"{name} must be a non-empty 1-d array, got shape {array.shape}")
    if length is not None and array.size != length:
        raise InvalidInput(f"{name} has {array.size} rows, reward has {length}")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} must be finite")
    return array


def bootstrap_ratios(rows: LoggedRows, terms: list[Terms], ci: CiOptions) -> list[np.ndarray]:
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


def make_estimate(
    estimator: str,
    rows: LoggedRows,
    weight: np.ndarray,
    value: float,
    draws: np.ndarray,
    ci: CiOptions,
    clip: float | None,
    thresholds: EvidenceThresholds,
) -> Estimate:
    tail = (1 - ci.ci_level) / 2
    if np.all(np.isnan(draws)):
        low = high = float("nan")
    else:
        low, high = (float(x) for x in np.nanquantile(draws, [tail, 1 - tail]))
    reward = rows.reward
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

"""What the off-policy estimators return: an estimate with its interval and evidence diagnostics, a paired
comparison, and the thresholds that flag low evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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

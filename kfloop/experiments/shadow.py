"""A shadow's off-policy value on production's live logged feedback, against production's own, with intervals.

During a shadow stage the router mirrors every request to the candidate, whose slate is recorded in the audit
trail (with its propensities) and never served. Production's slate for the same request was served: its
impressions (item, position, production's propensity) and their clicks are in the event log. Joined by request
id, each of production's logged rows (request x, item a, position j, propensity pi_0(a at j | x), reward r)
gets the candidate's probability of having shown a at j for the same request:

    target(x, a, j) = pi_c(a at j | x)       when the shadow's record carries it (exact), else
    target(x, a, j) = 1[shadow's item at j == a]   (replay / matching: the candidate's one sampled slate)

and the position-wise IPS estimate of the candidate's value is mean(target * r / pi_0) (`kfloop.ope`, the same
estimators the evaluator uses). Why the matching form is unbiased: the shadow drew its slate from pi_c
independently of production's draw and of the user's reaction, so E[1[shadow's item at j == a] | x, a, j] =
pi_c(a at j | x); by the tower rule E[1[...] r / pi_0] = E[pi_c r / pi_0], which is the IPS value, unbiased
for V(pi_c) when production gave every (item, position) the candidate can choose a non-zero probability (its
exploration does) and a slot's click depends on the item shown there. It pays for not knowing pi_c with
variance: only rows where the two slates agree count ("matched rows").

Production's value is the logged mean reward of the same rows (weight 1), and the difference is paired
(`kfloop.ope.estimate_difference`: one cluster bootstrap over requests for both), so its interval is narrower
than the two intervals side by side. The gate is non-inferiority on the difference's lower bound:

    non_inferior  lower bound > -margin
    inferior      upper bound < -margin       (the candidate is worse by more than the margin)
    undecided     otherwise
    thin_evidence fewer than `min_matched` matched rows, or low evidence by `kfloop.ope`'s diagnostics (effective
                  sample size of the weights, effective clicks): a few heavily weighted rows make a bootstrap
                  interval look tight when it is not, so such an interval decides nothing

The interval is a bootstrap interval, not an always-valid one: the controller computes it once per stage, when
the stage's evidence is in, not after every request (`monitoring.controller.shadow`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from kfloop.errors import InvalidInput
from kfloop.ope import DEFAULT_THRESHOLDS, EvidenceThresholds, estimate_difference

ShadowDecision = Literal["non_inferior", "inferior", "undecided", "thin_evidence"]
SHADOW_DECISIONS: tuple[ShadowDecision, ...] = ("non_inferior", "inferior", "undecided", "thin_evidence")


@dataclass(frozen=True)
class LoggedSlot:
    """One of production's served impressions, with its feedback."""

    request_id: str
    item_id: str
    position: int
    propensity: float
    """Production's probability of this item at this position."""
    clicked: bool


@dataclass(frozen=True)
class ShadowSlate:
    """The candidate's answer to one mirrored request."""

    request_id: str
    items: Mapping[int, str]
    """Position -> the item the shadow put there (its sampled slate)."""
    probabilities: Mapping[tuple[str, int], float] | None = None
    """(item, position) -> pi_c(item at position), when the shadow recorded its whole distribution."""

    def probability(self, item_id: str, position: int) -> float:
        if self.probabilities is not None:
            return float(self.probabilities.get((item_id, position), 0.0))
        return 1.0 if self.items.get(position) == item_id else 0.0


@dataclass(frozen=True)
class ShadowRows:
    """Production's logged rows of the mirrored requests, each with the candidate's probability of its item."""

    reward: np.ndarray
    pscore: np.ndarray
    target: np.ndarray
    request: np.ndarray
    """Each row's request (the bootstrap's resampling unit: a slate's slots move together)."""

    @property
    def matched(self) -> int:
        """Rows the candidate could have shown as production did (a non-zero target probability)."""
        return int(np.count_nonzero(self.target > 0))


def join_shadow(slates: Iterable[ShadowSlate], logged: Iterable[LoggedSlot]) -> ShadowRows:
    """Production's logged slots of the requests the shadow answered (others are not comparable: dropped)."""
    by_request = {s.request_id: s for s in slates}
    rows = [(s, by_request[s.request_id]) for s in logged if s.request_id in by_request]
    requests = {request: index for index, request in enumerate(dict.fromkeys(s.request_id for s, _ in rows))}
    return ShadowRows(
        reward=np.array([float(s.clicked) for s, _ in rows]),
        pscore=np.array([s.propensity for s, _ in rows]),
        target=np.array([shadow.probability(s.item_id, s.position) for s, shadow in rows]),
        request=np.array([requests[s.request_id] for s, _ in rows], dtype=np.int64),
    )


@dataclass(frozen=True)
class ShadowComparison:
    """The gate's numbers: both values with intervals, their paired difference, the evidence, the decision."""

    decision: ShadowDecision
    estimator: str
    margin: float
    ci_level: float
    requests: int
    rows: int
    matched: int
    clicks: int
    candidate: float
    candidate_low: float
    candidate_high: float
    production: float
    production_low: float
    production_high: float
    difference: float
    difference_low: float
    difference_high: float
    effective_sample: float
    """Kish effective sample size of the candidate's weights."""
    evidence: str = ""
    """Why the evidence is thin ("" when it suffices)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the stage record, the audit trail): undefined numbers become None."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in self.__dict__.items()}

    def summary(self) -> str:
        candidate = _ci(self.candidate, self.candidate_low, self.candidate_high)
        production = _ci(self.production, self.production_low, self.production_high)
        difference = _ci(self.difference, self.difference_low, self.difference_high)
        return (
            f"off-policy {self.estimator} on {self.rows} logged slots of {self.requests} mirrored requests "
            f"({self.matched} matched, {self.clicks} clicks): candidate {candidate}, production {production}, "
            f"difference {difference} at {self.ci_level:.0%} vs margin -{self.margin} -> {self.decision}"
            + (f" ({self.evidence})" if self.evidence else "")
        )


def compare_shadow(
    rows: ShadowRows,
    margin: float,
    min_matched: int,
    *,
    estimator: Literal["ips", "snips"] = "ips",
    ci_level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: EvidenceThresholds = DEFAULT_THRESHOLDS,
) -> ShadowComparison:
    """The candidate's off-policy value against production's on the same logged slots, and the gate's decision."""
    if not 0 < margin < 1:
        raise InvalidInput(f"margin must be in (0, 1), got {margin}")
    counts = {
        "requests": len(np.unique(rows.request)),
        "rows": len(rows.reward),
        "matched": rows.matched,
        "clicks": int(rows.reward.sum()),
    }
    common = {"estimator": estimator, "margin": margin, "ci_level": ci_level, **counts}
    if counts["rows"] == 0 or counts["matched"] < min_matched or counts["matched"] == 0:
        nan = float("nan")
        values = dict.fromkeys(VALUE_FIELDS, nan)
        evidence = f"{counts['matched']} matched rows (fewer than {min_matched})"
        return ShadowComparison(decision="thin_evidence", **common, **values, effective_sample=0.0, evidence=evidence)
    compared = estimate_difference(
        rows.reward,
        rows.pscore,
        rows.target,
        rows.pscore,
        estimator=estimator,
        slate_id=rows.request,
        n_boot=n_boot,
        ci_level=ci_level,
        seed=seed,
        thresholds=thresholds,
    )
    difference = compared.difference
    return ShadowComparison(
        decision=_decision(difference.low_evidence, difference.ci_low, difference.ci_high, margin),
        **common,
        candidate=compared.target.value,
        candidate_low=compared.target.ci_low,
        candidate_high=compared.target.ci_high,
        production=compared.reference.value,
        production_low=compared.reference.ci_low,
        production_high=compared.reference.ci_high,
        difference=difference.value,
        difference_low=difference.ci_low,
        difference_high=difference.ci_high,
        effective_sample=compared.target.ess,
        evidence=difference.reason,
    )


VALUE_FIELDS = (
    "candidate",
    "candidate_low",
    "candidate_high",
    "production",
    "production_low",
    "production_high",
    "difference",
    "difference_low",
    "difference_high",
)


def _decision(low_evidence: bool, low: float, high: float, margin: float) -> ShadowDecision:
    if low_evidence:
        return "thin_evidence"
    if low > -margin:
        return "non_inferior"
    return "inferior" if high < -margin else "undecided"


def _ci(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"

"""An always-valid sequential non-inferiority test of a candidate's online CTR against production's.

Hypotheses, with d = candidate CTR - production CTR and m the preregistered margin:

    promote ("non_inferior") rejects  H0: d <= -m   (the candidate is worse by the margin or more)
    roll back ("inferior")   rejects  H0': d >= -m  (the candidate is no worse than that)

Method: a mixture sequential probability ratio test (Johari, Koomen, Pekelis & Walsh 2022, "Always valid
inference: continuous monitoring of A/B tests", Operations Research), i.e. Robbins' normal-mixture boundary
(`kfloop.experiments.mixture`; Howard et al. 2021) applied to the difference of the two arms' click rates in
information time:

    S = (d_hat + m) * I,   V = I = 1 / (q_c (1 - q_c) / n_c + q_p (1 - q_p) / n_p)

where n_c, n_p are the arms' impressions and q_c, q_p the arms' CTRs re-estimated under the null boundary
d = -m (Farrington & Manning 1990, Statistics in Medicine 9: the restricted maximum likelihood, the score
test's variance; it keeps the error rate at small click counts where the plug-in variance does not). Under
H0 at its boundary S is approximately a Gaussian martingale with variance V, so the one-sided mixture M(S, V)
(half-normal prior of precision rho = 1 / m^2 on the effect: effects of the margin's size are the ones to
detect) is an e-process: "non_inferior" the first time log M(S, V) >= log(1/alpha), "inferior" the first time
log M(-S, V) >= log(1/alpha). Each error (a false promotion, a false "inferior") is at most alpha however often
the test is checked, after every impression included; this is an asymptotic guarantee (a CLT for the clicks),
which is why no decision is taken before `min_samples` candidate impressions (Waudby-Smith, Arbour, Sinha,
Kennedy & Ramdas 2024, "Time-uniform central limit theory and asymptotic confidence sequences", Ann.
Statist.). The unit tests check it by simulation at CTRs of 1% and 5%.

Reported for dashboards: the statistic z = (d_hat + m) sqrt(I) against its boundary b = u(I) / sqrt(I) (promote
when z >= b, inferior when z <= -b; b grows slowly with I, which is the price of peeking), and the always-valid
bounds d_hat -+ b / sqrt(I) on the difference (lower > -m exactly when non-inferior). Reaching `max_samples`
candidate impressions undecided ends the stage as preregistered (default: roll back); before `min_samples`
the decision is always "continue". The first decision other than "continue" ends the stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from kfloop.errors import InvalidInput
from kfloop.experiments.mixture import log_mixture, mixture_bound
from kfloop.experiments.prereg import ArmCounts, Preregistration

DecisionName = Literal["continue", "non_inferior", "inferior", "max_sample_undecided"]
Outcome = Literal["promote", "rollback", "continue"]
DECISIONS: tuple[DecisionName, ...] = ("continue", "non_inferior", "inferior", "max_sample_undecided")
CONTINUE, NON_INFERIOR, INFERIOR, MAX_SAMPLE_UNDECIDED = range(4)


@dataclass(frozen=True)
class Statistics:
    """The test's numbers for counts given as arrays (elementwise, any shape)."""

    difference: np.ndarray  # candidate CTR - production CTR
    information: np.ndarray  # I: 1 / variance of the difference at the margin; 0 while an arm has no impressions
    z: np.ndarray  # (difference + margin) * sqrt(I)
    log_e_non_inferior: np.ndarray  # log M(S, I): evidence against "worse by the margin or more"
    log_e_inferior: np.ndarray  # log M(-S, I): evidence against "no worse than the margin"


@dataclass(frozen=True)
class Decision:
    """One evaluation of a stage's test: the decision, what to do, and the numbers behind it."""

    decision: DecisionName
    outcome: Outcome
    statistic: float  # z = (difference + margin) / standard error at the margin
    boundary: float  # non_inferior when statistic >= boundary, inferior when statistic <= -boundary
    difference: float  # candidate CTR - production CTR
    lower: float  # always-valid lower bound on the difference (> -margin exactly when non-inferior)
    upper: float  # always-valid upper bound (< -margin exactly when inferior)
    log_e_value: float  # log M for promotion; reaches log(1/alpha) at the boundary
    log_e_value_inferior: float
    control_ctr: float
    candidate_ctr: float
    control_impressions: int
    candidate_impressions: int
    preregistration: str  # the preregistration's digest
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the audit trail): infinite or undefined numbers become None."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


def restricted_ctrs(
    candidate_clicks: Any, candidate_impressions: Any, control_clicks: Any, control_impressions: Any, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Both arms' CTRs by maximum likelihood under candidate - control = -margin (Farrington & Manning 1990).

    The closed-form root of the likelihood's cubic; needs impressions > 0 in both arms.
    """
    n1 = np.asarray(candidate_impressions, dtype=np.float64)
    n2 = np.asarray(control_impressions, dtype=np.float64)
    p1 = np.asarray(candidate_clicks, dtype=np.float64) / n1
    p2 = np.asarray(control_clicks, dtype=np.float64) / n2
    theta, d0 = n2 / n1, -margin
    a = 1 + theta
    b = -(1 + theta + p1 + theta * p2 + d0 * (theta + 2))
    c = d0 * d0 + d0 * (2 * p1 + theta + 1) + p1 + theta * p2
    d = -p1 * d0 * (1 + d0)
    b_3a = b / (3 * a)
    v = b_3a * b_3a * b_3a - b * c / (6 * a * a) + d / (2 * a)
    u = np.copysign(np.sqrt(np.maximum(b_3a * b_3a - c / (3 * a), 0.0)), v)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(u == 0, 0.0, v / (u * u * u))
    w = (np.pi + np.arccos(np.clip(cosine, -1.0, 1.0))) / 3
    q1 = np.clip(2 * u * np.cos(w) - b_3a, 0.0, 1.0 - margin)
    return q1, q1 + margin


def statistics(
    margin: float, control_clicks: Any, control_impressions: Any, candidate_clicks: Any, candidate_impressions: Any
) -> Statistics:
    """The test's statistics for cumulative counts (scalars or arrays of one shape, e.g. [experiments, time])."""
    counts = {
        "control_clicks": control_clicks,
        "control_impressions": control_impressions,
        "candidate_clicks": candidate_clicks,
        "candidate_impressions": candidate_impressions,
    }
    cc, cn, kc, kn = (_counts(name, value) for name, value in counts.items())
    for arm, clicks, impressions in (("control", cc, cn), ("candidate", kc, kn)):
        if np.any(clicks > impressions):
            raise InvalidInput(f"{arm}_clicks exceed {arm}_impressions")
    seen = (cn > 0) & (kn > 0)
    safe_cn, safe_kn = np.where(seen, cn, 1.0), np.where(seen, kn, 1.0)
    difference = np.where(seen, kc / safe_kn - cc / safe_cn, 0.0)
    q_candidate, q_control = restricted_ctrs(kc, safe_kn, cc, safe_cn, margin)
    variance = q_candidate * (1 - q_candidate) / safe_kn + q_control * (1 - q_control) / safe_cn
    information = np.where(seen, 1 / variance, 0.0)
    s = (difference + margin) * information
    rho = 1 / margin**2
    return Statistics(
        difference=difference,
        information=information,
        z=(difference + margin) * np.sqrt(information),
        log_e_non_inferior=log_mixture(s, information, rho),
        log_e_inferior=log_mixture(-s, information, rho),
    )


def decision_codes(prereg: Preregistration, stats: Statistics, candidate_impressions: Any) -> np.ndarray:
    """Index into DECISIONS of each element's decision (the vectorised core of `evaluate`)."""
    impressions = np.asarray(candidate_impressions)
    threshold = math.log(1 / prereg.alpha)
    ready = impressions >= prereg.min_samples
    return np.select(
        [
            ready & (stats.log_e_non_inferior >= threshold),
            ready & (stats.log_e_inferior >= threshold),
            impressions >= prereg.max_samples,
        ],
        [NON_INFERIOR, INFERIOR, MAX_SAMPLE_UNDECIDED],
        default=CONTINUE,
    )


def evaluate(prereg: Preregistration, control: ArmCounts, candidate: ArmCounts) -> Decision:
    """Decide a stage from the arms' cumulative counts; pure, so it may be called after every impression."""
    stats = statistics(prereg.margin, control.clicks, control.impressions, candidate.clicks, candidate.impressions)
    decision = DECISIONS[int(decision_codes(prereg, stats, candidate.impressions))]
    information, difference = float(stats.information), float(stats.difference)
    rho = 1 / prereg.margin**2
    boundary = mixture_bound(information, prereg.alpha, rho) / math.sqrt(information) if information > 0 else math.inf
    half_width = boundary / math.sqrt(information) if information > 0 else math.inf
    control_ctr, candidate_ctr = _ctr(control), _ctr(candidate)
    result = Decision(
        decision=decision,
        outcome=_outcome(decision, prereg),
        statistic=float(stats.z),
        boundary=boundary,
        difference=difference,
        lower=difference - half_width,
        upper=difference + half_width,
        log_e_value=float(stats.log_e_non_inferior),
        log_e_value_inferior=float(stats.log_e_inferior),
        control_ctr=control_ctr,
        candidate_ctr=candidate_ctr,
        control_impressions=control.impressions,
        candidate_impressions=candidate.impressions,
        preregistration=prereg.digest(),
        reason="",
    )
    return _with_reason(result, prereg)


def _counts(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise InvalidInput(f"{name} must be finite and non-negative")
    return array


def _ctr(arm: ArmCounts) -> float:
    return arm.clicks / arm.impressions if arm.impressions else math.nan


def _outcome(decision: DecisionName, prereg: Preregistration) -> Outcome:
    if decision == "non_inferior":
        return "promote"
    if decision == "inferior":
        return "rollback"
    if decision == "max_sample_undecided":
        return prereg.on_max_sample
    return "continue"


def _with_reason(d: Decision, prereg: Preregistration) -> Decision:
    margin = f"-{100 * prereg.margin:.2f} pt"
    ctrs = (
        f"candidate {prereg.metric} {d.candidate_ctr:.4%} over {d.candidate_impressions} impressions vs production "
        f"{d.control_ctr:.4%} over {d.control_impressions}"
    )
    bounds = f"difference {100 * d.difference:+.2f} pt, always-valid [{100 * d.lower:+.2f}, {100 * d.upper:+.2f}] pt"
    verdict = {
        "non_inferior": f"the lower bound is above {margin}: non-inferior",
        "inferior": f"the upper bound is below {margin}: inferior",
        "max_sample_undecided": f"undecided at max_samples {prereg.max_samples}: {prereg.on_max_sample}",
        "continue": (
            f"fewer than min_samples {prereg.min_samples} candidate impressions"
            if d.candidate_impressions < prereg.min_samples
            else f"the bounds still straddle {margin}: continue"
        ),
    }[d.decision]
    return Decision(**{**asdict(d), "reason": f"{ctrs}; {bounds}; {verdict}"})

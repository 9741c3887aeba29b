"""The sequential non-inferiority test: published boundary values, error rate and power by simulation
(checked after every impression), the preregistration's immutability and digest, and input errors."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.optimize import minimize_scalar

from kfloop.errors import InvalidInput
from kfloop.experiments import DECISIONS, ArmCounts, Preregistration, Statistics, decision_codes, evaluate, statistics
from kfloop.experiments.mixture import log_mixture, mixture_bound
from kfloop.experiments.sequential import CONTINUE, INFERIOR, NON_INFERIOR, restricted_ctrs

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
N_EXPERIMENTS = 500
PRODUCTION_CTR = 0.05
MARGIN = 0.01


def _prereg(**changes: object) -> Preregistration:
    fields: dict[str, object] = {
        "margin": MARGIN,
        "alpha": 0.05,
        "min_samples": 500,
        "max_samples": 5000,
        "created_at": WHEN,
    }
    return Preregistration(**{**fields, **changes})


# ---- the boundary against published values ---------------------------------------------------------------


def _howard_rho(v_opt: float, alpha: float) -> float:
    """Howard et al. (2021)'s rho optimising the two-sided normal mixture boundary at v_opt (confseq's
    `TwoSidedNormalMixture::best_rho`); the one-sided mixture uses it at 2 alpha."""
    return v_opt / (2 * math.log(1 / alpha) + math.log(1 + 2 * math.log(1 / alpha)))


def test_one_sided_normal_mixture_matches_published_values() -> None:
    # Reference values from Howard's confseq 0.0.11, test/uniform_boundaries_unittest.cpp ("all target
    # values are from a reference implementation in R"): V_OPT = 100, ALPHA_OPT = ALPHA = 0.05.
    assert _howard_rho(100, 0.05) == pytest.approx(12.60056, abs=1e-5)  # TestTwoSidedNormalMixture
    rho = _howard_rho(100, 2 * 0.05)  # OneSidedNormalMixture::best_rho
    assert float(log_mixture(10, 100, rho)) == pytest.approx(-0.06502391, abs=1e-5)  # normal_log_mixture(10, 100)
    assert mixture_bound(100, 0.05, rho) == pytest.approx(27.66071, abs=1e-5)  # normal_mixture_bound(100, .05)


def test_the_bound_is_where_the_mixture_reaches_one_over_alpha() -> None:
    for v in (0.0, 1.0, 1e3, 1e6):
        for alpha in (0.01, 0.05, 0.2):
            bound = mixture_bound(v, alpha, rho=50.0)
            assert float(log_mixture(bound, v, 50.0)) == pytest.approx(math.log(1 / alpha), abs=1e-9)
            assert float(log_mixture(0.999 * bound, v, 50.0)) < math.log(1 / alpha)


def test_restricted_ctrs_maximise_the_likelihood_on_the_margin() -> None:
    cases = [(3, 100, 8, 120), (0, 50, 4, 400), (40, 1000, 55, 1000), (5, 100, 0, 100), (0, 10, 0, 10), (9, 9, 9, 9)]
    for x1, n1, x2, n2 in cases:

        def negative_log_likelihood(p: float, x1: int = x1, n1: int = n1, x2: int = x2, n2: int = n2) -> float:
            p2 = p + MARGIN
            return -(x1 * np.log(p) + (n1 - x1) * np.log1p(-p) + x2 * np.log(p2) + (n2 - x2) * np.log1p(-p2))

        q_candidate, q_control = restricted_ctrs(x1, n1, x2, n2, MARGIN)
        assert float(q_control - q_candidate) == pytest.approx(MARGIN)
        best = minimize_scalar(negative_log_likelihood, bounds=(1e-12, 1 - MARGIN - 1e-12), method="bounded")
        # As likely as the numerical optimum, and at the same place (up to its tolerance, or the boundary 0).
        with np.errstate(divide="ignore", invalid="ignore"):
            assert negative_log_likelihood(max(float(q_candidate), 1e-12)) <= best.fun + 1e-9
        assert float(q_candidate) == pytest.approx(best.x, abs=1e-5)


# ---- error rate and power, by simulation ------------------------------------------------------------------

ALPHA = 0.05
MONTE_CARLO_LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_EXPERIMENTS)  # 0.079


def _naive_peeking(prereg: Preregistration, stats: Statistics, candidate_n: np.ndarray) -> np.ndarray:
    """A fixed-sample one-sided z-test at alpha, wrongly checked after every impression."""
    ready = candidate_n >= prereg.min_samples
    return np.where(ready & (stats.z >= 1.6449), NON_INFERIOR, CONTINUE)


def _simulate(
    prereg: Preregistration, control_ctr: float, candidate_ctr: float, share: float, seed: int, *, naive: bool = False
) -> np.ndarray:
    """Each experiment's first decision other than "continue", the test checked after every impression
    ([2, experiments] with the naive z-test's first decisions second when `naive`).

    Every impression goes to the candidate with probability `share` (else production) and is clicked with
    its arm's CTR; enough impressions are drawn for the candidate to reach max_samples in all but ~1e-9.
    """
    rng = np.random.default_rng(seed)
    steps = int(prereg.max_samples / share + 6 * math.sqrt(prereg.max_samples * (1 - share)) / share)
    deciders = [partial(decision_codes, prereg), partial(_naive_peeking, prereg)][: 2 if naive else 1]
    first = np.empty((len(deciders), N_EXPERIMENTS), dtype=np.int64)
    for start in range(0, N_EXPERIMENTS, 50):
        k = min(50, N_EXPERIMENTS - start)
        to_candidate = rng.random((k, steps)) < share
        clicked = rng.random((k, steps)) < np.where(to_candidate, candidate_ctr, control_ctr)
        candidate_n = np.cumsum(to_candidate, axis=1)
        control_n = np.arange(1, steps + 1) - candidate_n
        candidate_clicks = np.cumsum(clicked & to_candidate, axis=1)
        control_clicks = np.cumsum(clicked & ~to_candidate, axis=1)
        stats = statistics(prereg.margin, control_clicks, control_n, candidate_clicks, candidate_n)
        for i, decide in enumerate(deciders):
            decided = (codes := decide(stats, candidate_n)) != CONTINUE
            at = decided.argmax(axis=1)
            first[i, start : start + k] = np.where(decided.any(axis=1), codes[np.arange(k), at], CONTINUE)
    return first if naive else first[0]


def _rate(first: np.ndarray, code: int) -> float:
    return float(np.mean(first == code))


@pytest.mark.parametrize(
    ("control_ctr", "margin", "share", "max_samples"),
    [(0.05, 0.01, 0.5, 3000), (0.05, 0.01, 0.1, 1000), (0.01, 0.005, 0.5, 3000)],
    ids=["5%-margin-1pt-even-split", "5%-margin-1pt-canary-10%", "1%-margin-half-a-point"],
)
def test_an_arm_worse_by_the_margin_is_promoted_at_most_alpha(
    control_ctr: float, margin: float, share: float, max_samples: int
) -> None:
    prereg = _prereg(alpha=ALPHA, margin=margin, max_samples=max_samples)
    first, naive = _simulate(prereg, control_ctr, control_ctr - margin, share, seed=1, naive=True)
    rates = f"false promotion {_rate(first, NON_INFERIOR):.3f}, false inferior {_rate(first, INFERIOR):.3f}"
    print(f"{rates}; a z-test peeked at after every impression: {_rate(naive, NON_INFERIOR):.3f}")
    assert _rate(first, NON_INFERIOR) <= MONTE_CARLO_LIMIT
    # At d = -margin "no worse than the margin" holds too: calling it inferior is the other error.
    assert _rate(first, INFERIOR) <= MONTE_CARLO_LIMIT
    # The simulation can see the failure the test exists for: peeking at a fixed-sample test.
    assert _rate(naive, NON_INFERIOR) > MONTE_CARLO_LIMIT


def test_a_better_arm_is_promoted_within_the_maximum_sample() -> None:
    prereg = _prereg(alpha=ALPHA, max_samples=4000)
    first = _simulate(prereg, PRODUCTION_CTR, PRODUCTION_CTR + 0.01, share=0.5, seed=2)
    print(f"promoted {_rate(first, NON_INFERIOR):.3f}, inferior {_rate(first, INFERIOR):.3f}")
    assert _rate(first, NON_INFERIOR) >= 0.80
    assert _rate(first, INFERIOR) == 0.0


def test_an_arm_worse_by_three_margins_is_called_inferior_within_the_maximum_sample() -> None:
    prereg = _prereg(alpha=ALPHA, max_samples=3000)
    first = _simulate(prereg, PRODUCTION_CTR, PRODUCTION_CTR - 3 * MARGIN, share=0.5, seed=3)
    print(f"inferior {_rate(first, INFERIOR):.3f}, promoted {_rate(first, NON_INFERIOR):.3f}")
    assert _rate(first, INFERIOR) >= 0.80
    assert _rate(first, NON_INFERIOR) == 0.0


# ---- evaluate: the decision, its numbers, and the preregistered rules -------------------------------------


def _evaluate(prereg: Preregistration, control: tuple[int, int], candidate: tuple[int, int]):
    return evaluate(
        prereg,
        control=ArmCounts(clicks=control[0], impressions=control[1]),
        candidate=ArmCounts(clicks=candidate[0], impressions=candidate[1]),
    )


def test_evaluate_agrees_with_its_vectorised_core_and_its_reported_boundary() -> None:
    prereg = _prereg(max_samples=15_000)
    rng = np.random.default_rng(4)
    impressions = rng.integers(400, 20_000, size=(300, 2))
    ctrs = rng.uniform(0.02, 0.08, size=(300, 2))
    clicks = rng.binomial(impressions, ctrs)
    stats = statistics(MARGIN, clicks[:, 0], impressions[:, 0], clicks[:, 1], impressions[:, 1])
    codes = decision_codes(prereg, stats, impressions[:, 1])
    seen = set()
    for i in range(len(codes)):
        d = _evaluate(prereg, (int(clicks[i, 0]), int(impressions[i, 0])), (int(clicks[i, 1]), int(impressions[i, 1])))
        seen.add(d.decision)
        assert d.decision == DECISIONS[codes[i]]
        if d.decision in ("non_inferior", "inferior"):
            assert (d.statistic >= d.boundary) == (d.decision == "non_inferior")
            assert (d.statistic <= -d.boundary) == (d.decision == "inferior")
            assert (d.lower > -MARGIN) == (d.decision == "non_inferior")
            assert (d.upper < -MARGIN) == (d.decision == "inferior")
        elif d.candidate_impressions >= prereg.min_samples:
            assert -d.boundary < d.statistic < d.boundary
            assert d.lower <= -MARGIN <= d.upper
    assert {"continue", "non_inferior", "inferior", "max_sample_undecided"} <= seen


def test_a_decision_carries_its_numbers_and_the_preregistration_digest() -> None:
    prereg = _prereg(max_samples=20_000)
    d = _evaluate(prereg, control=(500, 10_000), candidate=(520, 10_000))
    assert (d.decision, d.outcome) == ("non_inferior", "promote")
    assert d.difference == pytest.approx(0.002)
    assert (d.control_ctr, d.candidate_ctr) == (0.05, 0.052)
    assert d.statistic >= d.boundary > 0
    assert d.log_e_value >= math.log(1 / prereg.alpha)
    assert d.preregistration == prereg.digest()
    assert "non-inferior" in d.reason
    json.dumps(d.to_dict(), allow_nan=False)
    worse = _evaluate(prereg, control=(500, 10_000), candidate=(300, 10_000))
    assert (worse.decision, worse.outcome) == ("inferior", "rollback")
    assert worse.log_e_value_inferior >= math.log(1 / prereg.alpha)


def test_nothing_is_decided_before_min_samples() -> None:
    prereg = _prereg(min_samples=2000, max_samples=20_000)
    # Overwhelming evidence of a worse candidate, but only 1999 candidate impressions.
    d = _evaluate(prereg, control=(5000, 100_000), candidate=(0, 1999))
    assert (d.decision, d.outcome) == ("continue", "continue")
    assert d.statistic < -d.boundary
    assert "min_samples" in d.reason
    assert _evaluate(prereg, control=(5000, 100_000), candidate=(0, 2000)).decision == "inferior"


def test_no_impressions_yet_is_continue_with_json_safe_numbers() -> None:
    d = _evaluate(_prereg(), control=(0, 0), candidate=(0, 0))
    assert d.decision == "continue"
    assert d.boundary == math.inf
    assert d.to_dict()["boundary"] is None
    json.dumps(d.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("on_max_sample", "outcome"), [(None, "rollback"), ("rollback", "rollback"), ("promote", "promote")]
)
def test_an_undecided_stage_ends_at_max_samples_as_preregistered(on_max_sample: str | None, outcome: str) -> None:
    changes = {} if on_max_sample is None else {"on_max_sample": on_max_sample}
    prereg = _prereg(max_samples=5000, **changes)
    assert _evaluate(prereg, control=(250, 4999), candidate=(225, 4999)).decision == "continue"
    d = _evaluate(prereg, control=(250, 5000), candidate=(225, 5000))
    assert (d.decision, d.outcome) == ("max_sample_undecided", outcome)
    assert "max_samples 5000" in d.reason


# ---- the preregistration --------------------------------------------------------------------------------


def test_the_preregistration_is_immutable() -> None:
    prereg = _prereg()
    with pytest.raises(ValidationError, match="frozen"):
        prereg.margin = 0.5  # type: ignore[misc]
    assert prereg.margin == MARGIN


def test_the_digest_is_the_sha256_of_a_stable_canonical_form() -> None:
    prereg = _prereg()
    canonical = (
        b'{"alpha":0.05,"created_at":"2026-12-01T09:30:00.000000Z","margin":0.01,"max_samples":5000,'
        b'"metric":"ctr","min_samples":500,"on_max_sample":"rollback"}'
    )
    assert prereg.canonical() == canonical
    assert prereg.digest() == hashlib.sha256(canonical).hexdigest()
    # The same registration read back, or written in another timezone, is the same registration.
    assert Preregistration.model_validate_json(prereg.model_dump_json()).digest() == prereg.digest()
    assert _prereg(created_at=WHEN.astimezone(timezone(timedelta(hours=2)))).digest() == prereg.digest()
    for change in ({"margin": 0.011}, {"alpha": 0.04}, {"on_max_sample": "promote"}, {"max_samples": 5001}):
        assert _prereg(**change).digest() != prereg.digest(), change


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"margin": 0}, "margin"),
        ({"margin": -0.01}, "margin"),
        ({"margin": 1.5}, "margin"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 0.7}, "alpha"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 600, "max_samples": 599}, "max_samples"),
        ({"on_max_sample": "wait"}, "on_max_sample"),
        ({"metric": "CTR!"}, "metric"),
        ({"created_at": datetime(2026, 12, 1)}, "created_at"),
        ({"margn": 0.01}, "margn"),
    ],
)
def test_a_bad_preregistration_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _prereg(**changes)


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        ({"clicks": -1, "impressions": 10}, "clicks"),
        ({"clicks": 1, "impressions": -10}, "impressions"),
        ({"clicks": 11, "impressions": 10}, "clicks .11. exceed impressions .10."),
        ({"clicks": 1.5, "impressions": 10}, "clicks"),
    ],
)
def test_bad_counts_name_the_field(counts: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ArmCounts(**counts)


def test_bad_count_arrays_name_the_array() -> None:
    with pytest.raises(InvalidInput, match="candidate_impressions must be finite and non-negative"):
        statistics(MARGIN, [1], [10], [1], [-10])
    with pytest.raises(InvalidInput, match="control_clicks exceed control_impressions"):
        statistics(MARGIN, [11], [10], [1], [10])

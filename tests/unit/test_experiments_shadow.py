"""The shadow stage's off-policy comparison (kfloop.experiments.shadow) on simulated traffic whose true values
are known: production (epsilon-greedy) serves and is clicked, the shadow draws its own slate for the same request
and is never shown; the estimate of the shadow's value, from production's clicks alone, must cover the truth."""

from __future__ import annotations

import numpy as np
import pytest

from kfloop.errors import InvalidInput
from kfloop.experiments.shadow import LoggedSlot, ShadowSlate, compare_shadow, join_shadow
from kfloop.ope import EpsilonGreedy, EvidenceThresholds

N_ITEMS, K = 8, 3
CLICK = np.linspace(0.30, 0.02, N_ITEMS)[:, None] * np.array([1.0, 0.7, 0.5])[None, :]
"""P(click | item a at position j): item 0 is the most attractive, slot 1 the most seen."""
PRODUCTION = np.array([3, 7, 1, 6, 0, 5, 2, 4], dtype=float)  # logits: prefers item 1, then 3, then 5
BETTER = np.arange(N_ITEMS, dtype=float)[::-1]  # prefers item 0, the most clicked
WORSE = np.arange(N_ITEMS, dtype=float)  # prefers item 7, the least clicked
POLICY = EpsilonGreedy(0.3)
GATE = EvidenceThresholds(min_rewards=30, min_effective_rewards=30, min_ess=300)
"""The shadow gate's default evidence thresholds (monitoring/controller/config.py OffPolicyGateConfig)."""


def true_value(logits: np.ndarray) -> float:
    """V(pi) per slot: mean over positions of sum_a pi(a at j) P(click | a, j)."""
    table = POLICY.position_propensities(logits, K)
    return float((table * CLICK).sum(axis=0).mean())


def simulate(candidate: np.ndarray, requests: int, seed: int, exact: bool = False):
    """Production serves and is clicked; the shadow answers the same requests (its slate never shown)."""
    rng = np.random.default_rng(seed)
    served = POLICY.position_propensities(PRODUCTION, K)
    shown = POLICY.sample_slate(np.tile(PRODUCTION, (requests, 1)), K, rng)
    clicks = rng.random(shown.shape) < CLICK[shown, np.arange(K)]
    mirrored = POLICY.sample_slate(np.tile(candidate, (requests, 1)), K, rng)
    table = POLICY.position_propensities(candidate, K)
    exact_probabilities = {(str(a), j + 1): float(table[a, j]) for a in range(N_ITEMS) for j in range(K)}
    logged = [
        LoggedSlot(f"r{r}", str(shown[r, j]), j + 1, float(served[shown[r, j], j]), bool(clicks[r, j]))
        for r in range(requests)
        for j in range(K)
    ]
    slates = [
        ShadowSlate(f"r{r}", {j + 1: str(mirrored[r, j]) for j in range(K)}, exact_probabilities if exact else None)
        for r in range(requests)
    ]
    return join_shadow(slates, logged)


@pytest.mark.parametrize("exact", [False, True], ids=["matching", "exact"])
def test_the_shadows_value_interval_covers_its_true_value(exact):
    rows = simulate(BETTER, 4000, seed=1, exact=exact)
    compared = compare_shadow(rows, margin=0.02, min_matched=50, n_boot=400, thresholds=GATE)
    truth_c, truth_p = true_value(BETTER), true_value(PRODUCTION)
    print(
        f"\n{'exact' if exact else 'matching'}: true candidate {truth_c:.4f}, production {truth_p:.4f}; "
        f"{compared.summary()}"
    )
    assert compared.candidate_low <= truth_c <= compared.candidate_high
    assert compared.production_low <= truth_p <= compared.production_high
    assert compared.difference_low <= truth_c - truth_p <= compared.difference_high
    assert compared.decision == "non_inferior" and truth_c - truth_p > 0.02
    assert compared.rows == 4000 * K and compared.requests == 4000


def test_a_worse_shadow_is_called_inferior():
    rows = simulate(WORSE, 4000, seed=2)
    compared = compare_shadow(rows, margin=0.02, min_matched=50, n_boot=400, thresholds=GATE)
    assert true_value(WORSE) - true_value(PRODUCTION) < -0.02
    assert compared.decision == "inferior", compared.summary()
    assert compared.difference_high < -0.02


def test_the_interval_covers_the_truth_at_about_its_level():
    """Over 60 simulated shadows of 1500 requests, the 90% interval of the candidate's value covers the truth in
    at least 80% (Monte Carlo error: one binomial standard deviation at 60 is ~3.9 points)."""
    truth = true_value(BETTER)
    covered = []
    for s in range(60):
        compared = compare_shadow(
            simulate(BETTER, 1500, seed=100 + s), 0.02, 20, ci_level=0.9, n_boot=200, seed=s, thresholds=GATE
        )
        covered.append(compared.candidate_low <= truth <= compared.candidate_high)
    print(f"\ncoverage of the 90% interval over 60 shadows: {np.mean(covered):.2f}")
    assert np.mean(covered) >= 0.80


def test_the_matching_estimate_is_unbiased_over_many_shadows():
    """Its mean over 200 shadows of 300 requests lies within 3 standard errors of the true value."""
    truth = true_value(BETTER)
    values = []
    for s in range(200):
        rows = simulate(BETTER, 300, seed=1000 + s)
        values.append(float((rows.target * rows.reward / rows.pscore).mean()))
    mean, error = np.mean(values), np.std(values) / np.sqrt(len(values))
    print(f"\nmean matching estimate {mean:.4f} +- {error:.4f}, truth {truth:.4f}")
    assert abs(mean - truth) <= 3 * error


def test_too_few_matched_rows_is_thin_evidence_not_a_verdict():
    rows = simulate(BETTER, 20, seed=3)
    compared = compare_shadow(rows, margin=0.02, min_matched=rows.matched + 1)
    assert compared.decision == "thin_evidence"
    assert compared.to_dict()["candidate"] is None and compared.matched == rows.matched
    assert "n/a" in compared.summary()


def test_requests_the_shadow_did_not_answer_are_left_out():
    logged = [LoggedSlot("a", "1", 1, 0.5, True), LoggedSlot("b", "2", 1, 0.5, False)]
    rows = join_shadow([ShadowSlate("a", {1: "1"})], logged)
    assert rows.reward.tolist() == [1.0] and rows.target.tolist() == [1.0] and rows.matched == 1


def test_a_margin_outside_zero_and_one_is_refused():
    rows = join_shadow([ShadowSlate("a", {1: "1"})], [LoggedSlot("a", "1", 1, 0.5, True)])
    with pytest.raises(InvalidInput, match="margin"):
        compare_shadow(rows, margin=1.5, min_matched=1)


def test_a_few_heavily_weighted_slots_are_thin_evidence_however_tight_their_interval():
    """Production (80 items, epsilon 0.1) rarely shows what the candidate would: the candidate's true value is
    about 8 times production's, yet 500 requests' estimate is near 0 with a tight bootstrap interval, because the
    few slots that carry it happened not to be clicked. Its effective sample size says so; the gate does not roll
    the candidate back on it."""
    n, k, policy = 80, 3, EpsilonGreedy(0.1)
    production, candidate = np.arange(n, dtype=float)[::-1], np.arange(n, dtype=float)
    click = np.full((n, k), 0.03)
    click[-10:, :] = 0.3  # the candidate's favourites
    rng = np.random.default_rng(4)
    shown = policy.sample_slate(np.tile(production, (500, 1)), k, rng)
    clicks = rng.random(shown.shape) < click[shown, np.arange(k)]
    served, table = policy.position_propensities(production, k), policy.position_propensities(candidate, k)
    exact = {(str(a), j + 1): float(table[a, j]) for a in range(n) for j in range(k)}
    logged = [
        LoggedSlot(f"r{r}", str(shown[r, j]), j + 1, float(served[shown[r, j], j]), bool(clicks[r, j]))
        for r in range(500)
        for j in range(k)
    ]
    rows = join_shadow([ShadowSlate(f"r{r}", {}, exact) for r in range(500)], logged)
    loose = EvidenceThresholds(min_rewards=1, min_effective_rewards=1, min_ess=1)
    naive = compare_shadow(rows, 0.02, 100, n_boot=300, thresholds=loose)
    assert naive.decision == "inferior" and (table * click).sum(axis=0).mean() > 5 * (served * click).sum(axis=0).mean()
    gated = compare_shadow(rows, 0.02, 100, n_boot=300, thresholds=GATE)
    print(f"\n{gated.summary()}")
    assert gated.decision == "thin_evidence" and "effective sample size" in gated.evidence

"""IPS, SNIPS, DR: hand-computed values, bootstrap intervals, paired differences, evidence flags."""

from __future__ import annotations

import numpy as np
import pytest

from kfloop.errors import InvalidInput
from kfloop.ope import (
    EvidenceThresholds,
    dr,
    estimate_difference,
    expected_reward,
    ips,
    logged_propensity,
    snips,
)

REWARD = np.array([1.0, 0.0, 1.0, 0.0])
PSCORE = np.array([0.5, 0.25, 0.5, 1.0])
TARGET = np.array([0.25, 0.5, 1.0, 0.5])  # weights 0.5, 2, 2, 0.5
Q_HAT = np.array([0.2, 0.1, 0.3, 0.4])
Q_TARGET = np.array([0.3, 0.2, 0.1, 0.0])


def test_values_match_hand_computation() -> None:
    assert ips(REWARD, PSCORE, TARGET).value == pytest.approx((0.5 + 2.0) / 4)
    assert snips(REWARD, PSCORE, TARGET).value == pytest.approx((0.5 + 2.0) / (0.5 + 2 + 2 + 0.5))
    # q_target + w (r - q_hat): 0.3 + 0.5 * 0.8, 0.2 + 2 * -0.1, 0.1 + 2 * 0.7, 0.0 + 0.5 * -0.4
    assert dr(REWARD, PSCORE, TARGET, Q_HAT, Q_TARGET).value == pytest.approx((0.7 + 0.0 + 1.5 - 0.2) / 4)


def test_clipping_caps_the_weights() -> None:
    estimate = ips(REWARD, PSCORE, TARGET, clip=1.0)
    assert estimate.value == pytest.approx((0.5 + 1.0) / 4)
    assert estimate.max_weight == 1.0
    assert estimate.clip == 1.0


def test_snips_equals_ips_when_the_weights_average_one() -> None:
    reward = np.array([1.0, 0.0, 1.0, 1.0])
    pscore = np.array([0.4, 0.2, 0.5, 0.1])
    target = pscore * np.array([0.5, 1.5, 1.0, 1.0])
    assert snips(reward, pscore, target).value == pytest.approx(ips(reward, pscore, target).value)


def test_diagnostics_match_hand_computation() -> None:
    estimate = ips(REWARD, PSCORE, TARGET)
    weights = np.array([0.5, 2.0, 2.0, 0.5])
    assert estimate.ess == pytest.approx(weights.sum() ** 2 / (weights**2).sum())
    assert estimate.effective_rewards == pytest.approx((0.5 + 2.0) ** 2 / (0.25 + 4.0))
    assert (estimate.n, estimate.n_decisions, estimate.n_rewards, estimate.max_weight) == (4, 4, 2, 2.0)


def on_policy_log(n_rows: int, ctr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reward = (rng.random(n_rows) < ctr).astype(float)
    pscore = rng.uniform(0.05, 0.5, n_rows)
    return reward, pscore


def test_on_policy_interval_is_the_bootstrap_of_the_mean() -> None:
    reward, pscore = on_policy_log(20_000, 0.1, seed=0)
    estimate = ips(reward, pscore, pscore)
    assert estimate.value == pytest.approx(reward.mean())
    standard_error = reward.std() / np.sqrt(len(reward))
    assert estimate.ci_low == pytest.approx(reward.mean() - 1.96 * standard_error, abs=0.2 * standard_error)
    assert estimate.ci_high == pytest.approx(reward.mean() + 1.96 * standard_error, abs=0.2 * standard_error)
    assert not estimate.low_evidence
    assert estimate.reasons == ()
    assert estimate.reason == ""


def test_the_interval_is_seeded() -> None:
    reward, pscore = on_policy_log(2_000, 0.1, seed=1)
    target = np.clip(pscore * 1.3, 0, 1)
    first, again = ips(reward, pscore, target, seed=7), ips(reward, pscore, target, seed=7)
    other = ips(reward, pscore, target, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_slates_are_resampled_whole() -> None:
    # Three rows per slate with identical rewards: resampling rows would pretend three times the data.
    rng = np.random.default_rng(2)
    per_slate = (rng.random(1_000) < 0.2).astype(float)
    reward = np.repeat(per_slate, 3)
    pscore = np.full(reward.size, 0.5)
    by_row = ips(reward, pscore, pscore)
    by_slate = ips(reward, pscore, pscore, slate_id=np.repeat(np.arange(1_000), 3))
    assert by_slate.n_decisions == 1_000
    assert by_slate.value == by_row.value
    width_ratio = (by_slate.ci_high - by_slate.ci_low) / (by_row.ci_high - by_row.ci_low)
    assert width_ratio == pytest.approx(np.sqrt(3), rel=0.15)


def test_the_difference_is_paired_and_consistent_with_single_estimates() -> None:
    rng = np.random.default_rng(3)
    n_rows = 5_000
    pscore = rng.uniform(0.1, 0.5, n_rows)
    target = np.clip(pscore * rng.uniform(0.8, 1.25, n_rows), 0, 1)
    reward = (rng.random(n_rows) < 0.3).astype(float)
    comparison = estimate_difference(reward, pscore, target, pscore, estimator="ips", seed=5)
    alone = ips(reward, pscore, target, seed=5)
    assert (comparison.target.value, comparison.target.ci_low, comparison.target.ci_high) == (
        alone.value,
        alone.ci_low,
        alone.ci_high,
    )
    assert comparison.reference.value == pytest.approx(reward.mean())
    difference = comparison.difference
    assert difference.value == pytest.approx(alone.value - reward.mean())
    unpaired_width = np.hypot(alone.ci_high - alone.ci_low, comparison.reference.ci_high - comparison.reference.ci_low)
    assert difference.ci_high - difference.ci_low < 0.5 * unpaired_width


def test_a_policy_compared_with_itself_differs_by_exactly_zero() -> None:
    reward, pscore = on_policy_log(1_000, 0.2, seed=4)
    target = np.clip(pscore * 1.5, 0, 1)
    q_hat = np.full(reward.size, 0.2)
    comparison = estimate_difference(
        reward, pscore, target, target, estimator="dr", q_hat=q_hat, q_hat_target=q_hat, q_hat_reference=q_hat
    )
    assert (comparison.difference.value, comparison.difference.ci_low, comparison.difference.ci_high) == (0, 0, 0)
    assert comparison.difference.estimator == "dr_difference"


def test_low_evidence_is_flagged_with_its_reasons() -> None:
    reward, pscore = on_policy_log(10_000, 0.004, seed=5)  # OBD-like: about 40 clicks
    estimate = snips(reward, pscore, pscore)
    assert estimate.low_evidence
    assert any("positive rewards" in reason for reason in estimate.reasons)
    relaxed = snips(reward, pscore, pscore, thresholds=EvidenceThresholds(min_rewards=10, min_effective_rewards=10))
    assert not relaxed.low_evidence


def test_heavy_weights_are_flagged_even_with_many_clicks() -> None:
    reward, pscore = on_policy_log(10_000, 0.2, seed=6)
    target = np.zeros_like(pscore)
    target[:20] = 1.0  # the target policy agrees with the log on 20 rows only
    estimate = ips(reward, pscore, target)
    assert estimate.n_rewards > 1_000
    assert estimate.low_evidence
    assert any("effective sample size" in reason for reason in estimate.reasons)


def test_the_difference_names_which_policy_lacks_evidence() -> None:
    reward, pscore = on_policy_log(10_000, 0.2, seed=7)
    target = np.zeros_like(pscore)
    target[:20] = 1.0
    comparison = estimate_difference(reward, pscore, target, pscore, estimator="snips")
    assert comparison.difference.low_evidence
    assert comparison.difference.reasons
    assert all(reason.startswith("target: ") for reason in comparison.difference.reasons)
    assert not comparison.reference.low_evidence


def test_propensity_helpers_pick_the_logged_cell_and_the_target_expectation() -> None:
    propensities = np.array(
        [
            [[0.5, 0.1], [0.3, 0.6], [0.2, 0.3]],
            [[0.1, 0.2], [0.1, 0.2], [0.8, 0.6]],
        ]
    )  # [contexts, items, positions]
    q_hat = np.array([[[0.1, 0.05], [0.2, 0.1], [0.3, 0.15]], [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]])
    context, item, position = np.array([0, 1, 1]), np.array([1, 2, 0]), np.array([1, 0, 1])
    np.testing.assert_allclose(logged_propensity(propensities, item, position, context), [0.6, 0.8, 0.2])
    np.testing.assert_allclose(
        expected_reward(propensities, q_hat, position, context),
        [0.1 * 0.05 + 0.6 * 0.1 + 0.3 * 0.15, 0.1 * 0.5 + 0.8 * 1.0, 0.2 * 0.5 + 0.6 * 1.0],
    )
    per_row = propensities[context]
    np.testing.assert_allclose(logged_propensity(per_row, item, position), [0.6, 0.8, 0.2])


@pytest.mark.parametrize(
    "call",
    [
        lambda: ips(REWARD, np.array([0.5, 0.0, 0.5, 1.0]), TARGET),  # a logged item the log could not show
        lambda: ips(REWARD, PSCORE, TARGET[:3]),
        lambda: ips(REWARD, PSCORE, np.array([0.25, np.nan, 1.0, 0.5])),
        lambda: ips(REWARD, PSCORE, np.array([0.25, 1.5, 1.0, 0.5])),
        lambda: ips(REWARD, PSCORE, TARGET, n_boot=10),
        lambda: ips(REWARD, PSCORE, TARGET, ci_level=1.0),
        lambda: ips(REWARD, PSCORE, TARGET, clip=0.0),
        lambda: ips(REWARD, PSCORE, TARGET, slate_id=np.array([1, 2])),
        lambda: ips(np.array([]), np.array([]), np.array([])),
        lambda: estimate_difference(REWARD, PSCORE, TARGET, PSCORE, estimator="dr"),  # no reward model
        lambda: estimate_difference(REWARD, PSCORE, TARGET, PSCORE, estimator="switch"),
    ],
)
def test_invalid_inputs_are_rejected(call) -> None:
    with pytest.raises(InvalidInput):
        call()


def test_an_estimate_serializes_for_reports() -> None:
    as_dict = ips(REWARD, PSCORE, TARGET).to_dict()
    assert as_dict["estimator"] == "ips"
    assert isinstance(as_dict["reasons"], list)
    assert {"value", "ci_low", "ci_high", "ess", "effective_rewards", "low_evidence"} <= set(as_dict)

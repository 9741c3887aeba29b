"""Exploration policies: exact position propensities against brute-force enumeration and sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kfloop.errors import InvalidInput
from kfloop.ope import EpsilonGreedy, Softmax, UniformRandom, monte_carlo_position_propensities


def slate_probability(policy, scores: np.ndarray, slate: tuple[int, ...]) -> float:
    """Probability of one ordered slate, straight from the policy's definition, slot by slot."""
    n_items = len(scores)
    probability, taken = 1.0, []
    for item in slate:
        remaining = [i for i in range(n_items) if i not in taken]
        if isinstance(policy, EpsilonGreedy):
            best = max(remaining, key=lambda i: (scores[i], -i))  # highest score, ties to the lower index
            step = policy.epsilon / len(remaining) + (1 - policy.epsilon) * (item == best)
        elif isinstance(policy, Softmax):
            logits = np.array([scores[i] for i in remaining]) / policy.temperature
            weights = np.exp(logits - logits.max())
            step = weights[remaining.index(item)] / weights.sum()
        else:
            step = 1.0 / len(remaining)
        probability *= step
        taken.append(item)
    return probability


def brute_force_propensities(policy, scores: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(scores), k))
    for slate in itertools.permutations(range(len(scores)), k):
        probability = slate_probability(policy, scores, slate)
        for position, item in enumerate(slate):
            out[item, position] += probability
    return out


# Scores with frequent ties (integers) and wide ranges (softmax with huge gaps must stay exact).
score_lists = st.one_of(
    st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=7),
    st.lists(st.floats(-60, 60, allow_nan=False), min_size=1, max_size=7),
)
policies = st.one_of(
    st.floats(0, 1).map(EpsilonGreedy),
    st.sampled_from([0.0, 1.0]).map(EpsilonGreedy),
    st.floats(0.05, 20).map(Softmax),
    st.just(UniformRandom()),
)


def max_k(policy, n_items: int) -> int:
    return min(n_items, 3) if isinstance(policy, Softmax) else n_items


@settings(max_examples=300, deadline=None)
@given(scores=score_lists, policy=policies, data=st.data())
def test_propensities_equal_brute_force_enumeration(scores, policy, data) -> None:
    scores = np.array(scores)
    k = data.draw(st.integers(1, min(max_k(policy, len(scores)), 4)))
    exact = policy.position_propensities(scores, k)
    assert exact.shape == (len(scores), k)
    np.testing.assert_allclose(exact, brute_force_propensities(policy, scores, k), rtol=0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(-30, 30, allow_nan=False), min_size=3, max_size=80),
    policy=policies,
    data=st.data(),
)
def test_every_column_sums_to_one_and_every_row_to_at_most_one(scores, policy, data) -> None:
    scores = np.array(scores)
    k = data.draw(st.integers(1, max_k(policy, len(scores))))
    propensities = policy.position_propensities(scores, k)
    assert np.all(propensities >= 0)
    np.testing.assert_allclose(propensities.sum(axis=0), 1.0, atol=1e-9)
    assert np.all(propensities.sum(axis=1) <= 1 + 1e-9)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    scores=st.lists(st.integers(-2, 2).map(float), min_size=3, max_size=8),
    policy=policies,
    seed=st.integers(0, 2**32 - 1),
)
def test_sampling_frequencies_match_propensities(scores, policy, seed) -> None:
    scores = np.array(scores)
    k = min(3, len(scores))
    n_samples = 20_000
    slates = policy.sample_slate(np.tile(scores, (n_samples, 1)), k, np.random.default_rng(seed))
    assert all(len(set(slate)) == k for slate in slates.tolist())  # without replacement
    frequencies = np.stack([np.bincount(slates[:, j], minlength=len(scores)) for j in range(k)], axis=1)
    frequencies = frequencies / n_samples
    expected = policy.position_propensities(scores, k)
    # 5 standard errors per cell: a wrong propensity by a few percent fails, sampling noise does not.
    tolerance = 5 * np.sqrt(expected * (1 - expected) / n_samples) + 1e-9
    assert np.all(np.abs(frequencies - expected) <= tolerance)


def test_a_single_sampled_slate_is_k_distinct_items() -> None:
    rng = np.random.default_rng(3)
    for policy in (EpsilonGreedy(0.5), Softmax(1.0), UniformRandom()):
        slate = policy.sample_slate(np.arange(10.0), 3, rng)
        assert slate.shape == (3,)
        assert len(set(slate.tolist())) == 3


def test_a_batch_gives_the_same_propensities_as_each_context_alone() -> None:
    scores = np.random.default_rng(0).normal(scale=5, size=(40, 80))
    scores[7, :3] = [500.0, 0.0, -500.0]  # one context on the split (huge gap) path
    for policy in (EpsilonGreedy(0.2), Softmax(0.7), UniformRandom()):
        batch = policy.position_propensities(scores, 3)
        one_by_one = np.stack([policy.position_propensities(row, 3) for row in scores])
        np.testing.assert_allclose(batch, one_by_one, rtol=1e-12, atol=1e-15)


def test_softmax_with_huge_gaps_still_follows_plackett_luce() -> None:
    # Item 0 is first for sure; then items 1 and 2 compete with logits 0 and -1; item 3 never appears.
    propensities = Softmax(1.0).position_propensities(np.array([1000.0, 0.0, -1.0, -1000.0]), 3)
    p1 = 1 / (1 + np.exp(-1.0))
    expected = np.array([[1, 0, 0], [0, p1, 1 - p1], [0, 1 - p1, p1], [0, 0, 0]])
    np.testing.assert_allclose(propensities, expected, atol=1e-15)


def test_epsilon_zero_is_the_top_k_with_ties_to_the_lower_index() -> None:
    propensities = EpsilonGreedy(0.0).position_propensities(np.array([1.0, 3.0, 3.0, 2.0]), 3)
    np.testing.assert_array_equal(propensities.argmax(axis=0), [1, 2, 3])
    np.testing.assert_array_equal(propensities.max(axis=0), [1.0, 1.0, 1.0])


def test_epsilon_one_and_uniform_random_give_one_over_n_everywhere() -> None:
    scores = np.random.default_rng(1).normal(size=80)
    for policy in (EpsilonGreedy(1.0), UniformRandom()):
        np.testing.assert_allclose(policy.position_propensities(scores, 3), 1 / 80, rtol=1e-12)


def test_epsilon_greedy_keeps_most_mass_on_the_greedy_slate() -> None:
    propensities = EpsilonGreedy(0.1).position_propensities(np.array([0.0, 5.0, 4.0, 3.0, 1.0]), 3)
    # Slot 0: the best item unless exploring (0.9 + 0.1 / 5); other items 0.1 / 5 each.
    assert propensities[1, 0] == pytest.approx(0.9 + 0.02)
    assert propensities[0, 0] == pytest.approx(0.02)


def test_monte_carlo_propensities_approximate_the_exact_ones_for_larger_k() -> None:
    scores = np.random.default_rng(2).normal(size=8)
    policy = EpsilonGreedy(0.3)
    estimated = monte_carlo_position_propensities(policy, scores, 5, 40_000, np.random.default_rng(0))
    np.testing.assert_allclose(estimated, policy.position_propensities(scores, 5), atol=0.01)


@pytest.mark.parametrize(
    "make, scores, k",
    [
        (lambda: Softmax(1.0), np.arange(5.0), 4),  # exact softmax only for k <= 3
        (lambda: EpsilonGreedy(0.1), np.arange(3.0), 4),  # more slots than items
        (lambda: EpsilonGreedy(0.1), np.array([0.0, np.nan, 1.0]), 2),
        (lambda: UniformRandom(), np.zeros((2, 2, 2)), 1),
        (lambda: EpsilonGreedy(1.5), np.arange(3.0), 1),
        (lambda: Softmax(0.0), np.arange(3.0), 1),
    ],
)
def test_invalid_arguments_are_rejected(make, scores, k) -> None:
    with pytest.raises(InvalidInput):
        make().position_propensities(scores, k)

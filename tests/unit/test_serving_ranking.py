"""The predictor's slates: each shown item's propensity is the policy's exact P(item at that position), and over
many draws for the same scores it matches the observed frequency (both policies, in-process; the HTTP version
of this check is in tests/integration/test_serving_stack.py). Each slot also says how it was drawn: greedy
exactly when the draw took the best remaining item, as often as the policy does that."""

from __future__ import annotations

import numpy as np
import pytest

from serving.predictor.config import PolicyConfig
from serving.predictor.ranking import choose_slate, make_policy

pytestmark = pytest.mark.serving

LOGITS = np.array([2.0, 1.5, 1.4, 0.3, -0.2, -1.0, 0.9, 0.0])


def observed(policy, logits: np.ndarray, k: int, draws: int, seed: int = 11):
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(logits), k))
    logged: dict[tuple[int, int], float] = {}
    for _ in range(draws):
        choice = choose_slate(policy, logits, k, rng)
        for position, (item, propensity) in enumerate(zip(choice.indices, choice.propensities, strict=True)):
            counts[item, position] += 1
            assert logged.setdefault((item, position), propensity) == propensity  # same scores, same propensity
    return counts / draws, logged


@pytest.mark.parametrize(
    "config",
    [
        PolicyConfig(exploration="epsilon_greedy", epsilon=0.1),
        PolicyConfig(exploration="epsilon_greedy", epsilon=0.5),
        PolicyConfig(exploration="softmax", temperature=0.7),
    ],
    ids=["eps-0.1", "eps-0.5", "softmax-0.7"],
)
def test_logged_propensities_match_observed_position_frequencies(config):
    draws = 20_000
    frequency, logged = observed(make_policy(config), LOGITS, 3, draws)
    assert logged, "nothing was shown"
    for (item, position), propensity in logged.items():
        tolerance = 4.5 * np.sqrt(propensity * (1 - propensity) / draws) + 1 / draws
        assert abs(frequency[item, position] - propensity) <= tolerance, (item, position, propensity)
    # and every (item, position) never shown has a small propensity under the policy
    table = make_policy(config).position_propensities(LOGITS, 3)
    for item in range(len(LOGITS)):
        for position in range(3):
            if (item, position) not in logged:
                assert table[item, position] < 10 / draws


def test_the_slate_is_as_long_as_the_candidates_allow_and_never_repeats_an_item():
    rng = np.random.default_rng(0)
    policy = make_policy(PolicyConfig(epsilon=1.0))
    for _ in range(200):
        choice = choose_slate(policy, LOGITS[:2], 3, rng)
        assert len(choice.indices) == 2 and len(set(choice.indices)) == 2
        assert all(0 < p <= 1 for p in choice.propensities)


def test_without_exploration_the_slate_is_the_top_k_with_propensity_one():
    choice = choose_slate(make_policy(PolicyConfig(epsilon=0.0)), LOGITS, 3, np.random.default_rng(0))
    assert choice.indices == [0, 1, 2] and choice.propensities == [1.0, 1.0, 1.0]


def best_remaining(logits: np.ndarray, taken: list[int]) -> int:
    return max((i for i in range(len(logits)) if i not in taken), key=lambda i: (logits[i], -i))


@pytest.mark.parametrize(
    "config",
    [PolicyConfig(exploration="epsilon_greedy", epsilon=0.3), PolicyConfig(exploration="softmax", temperature=0.7)],
    ids=["eps-0.3", "softmax-0.7"],
)
def test_each_slot_says_whether_its_draw_took_the_best_remaining_item(config):
    policy, rng, k, draws = make_policy(config), np.random.default_rng(5), 3, 4000
    logits = np.array([2.0, 1.5, 1.4, 0.3, -0.2, -1.0, 0.9, 1.4])  # a tie: 2 and 7 (the earlier one is better)
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    greedy_first = 0
    for _ in range(draws):
        choice = choose_slate(policy, logits, k, rng)
        assert choice.ranks == [order.index(i) + 1 for i in choice.indices]
        for slot, (item, draw) in enumerate(zip(choice.indices, choice.draws, strict=True)):
            assert draw == ("greedy" if item == best_remaining(logits, choice.indices[:slot]) else "exploration")
            assert draw == "exploration" or choice.ranks[slot] <= slot + 1  # a greedy slot is in the top k
        greedy_first += choice.draws[0] == "greedy"
    # slot 1 is greedy as often as the policy puts the best item there
    expected = make_policy(config).position_propensities(logits, k)[0, 0]
    assert abs(greedy_first / draws - expected) <= 4.5 * np.sqrt(expected * (1 - expected) / draws)


def test_without_exploration_every_slot_is_greedy():
    choice = choose_slate(make_policy(PolicyConfig(epsilon=0.0)), LOGITS, 3, np.random.default_rng(0))
    assert choice.draws == ["greedy"] * 3 and choice.ranks == [1, 2, 3]

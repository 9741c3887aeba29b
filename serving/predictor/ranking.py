"""From scores to a shown slate, with each shown item's exact propensity, through kfloop.ope.policies.

The policies are the ones the off-policy estimators and the evaluator use, applied to the model's logits as
the evaluator applies them, so what serving logs is exactly what OPE assumes: the propensity of a shown item
is P[item, position], the probability that the policy puts that item at that position. Each shown slot also
carries what the draw knew: the item's rank by score and whether the draw was greedy or exploration
(`kfloop.ope.policies.greedy_slots`), so explanations read them instead of re-scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kfloop.audit.record import EXPLORATION, GREEDY
from kfloop.ope.policies import EpsilonGreedy, SlatePolicy, Softmax, greedy_ranks, greedy_slots
from serving.predictor.config import PolicyConfig


def make_policy(config: PolicyConfig) -> SlatePolicy:
    if config.exploration == "softmax":
        return Softmax(config.temperature)
    return EpsilonGreedy(config.epsilon)


@dataclass(frozen=True)
class SlateChoice:
    indices: list[int]
    """Candidate indices, slot 1 first."""
    propensities: list[float]
    """P(that candidate at that slot) under the policy, per shown slot."""
    ranks: list[int]
    """Each shown item's place among the candidates by score, 1 = best (ties to the earlier candidate)."""
    draws: list[str]
    """Per shown slot: greedy (the draw took the best remaining item) or exploration."""
    table: np.ndarray
    """[candidates, shown slots]: P(that candidate at that slot) for every candidate (a shadow records it)."""


def choose_slate(policy: SlatePolicy, logits: np.ndarray, k: int, rng: np.random.Generator) -> SlateChoice:
    """Sample a slate of min(k, n) items; look up each shown item's position propensity and rank, and say how
    each slot was drawn."""
    k = min(k, len(logits))
    slate = policy.sample_slate(logits, k, rng)
    table = policy.position_propensities(logits, k)
    propensities = table[slate, np.arange(k)]
    ranks = greedy_ranks(logits)[slate]
    draws = [GREEDY if greedy else EXPLORATION for greedy in greedy_slots(ranks)]
    indices, shown = [int(i) for i in slate], [float(p) for p in propensities]
    return SlateChoice(indices, shown, [int(r) + 1 for r in ranks], draws, table)

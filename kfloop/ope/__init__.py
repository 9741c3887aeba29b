"""Off-policy evaluation: exploration policies with exact propensities, estimators, and a simulator.

Plain functions shared by the evaluator, the controller and reports; numpy only (plus pandas to read OBD).
"""

from kfloop.ope.estimators import (
    DEFAULT_THRESHOLDS,
    Comparison,
    Estimate,
    EvidenceThresholds,
    dr,
    estimate_difference,
    expected_reward,
    ips,
    logged_propensity,
    snips,
)
from kfloop.ope.policies import (
    EpsilonGreedy,
    SlatePolicy,
    Softmax,
    UniformRandom,
    monte_carlo_position_propensities,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Comparison",
    "EpsilonGreedy",
    "Estimate",
    "EvidenceThresholds",
    "SlatePolicy",
    "Softmax",
    "UniformRandom",
    "dr",
    "estimate_difference",
    "expected_reward",
    "ips",
    "logged_propensity",
    "monte_carlo_position_propensities",
    "snips",
]

"""Experiments that decide: preregistered, always-valid sequential tests for promoting a candidate model.

    prereg = Preregistration(margin=0.01, alpha=0.05, min_samples=1000, max_samples=20000)
    decision = evaluate(prereg, control=ArmCounts(impressions=..., clicks=...), candidate=ArmCounts(...))
    decision.decision, decision.outcome, decision.statistic, decision.boundary

The method is documented in `kfloop.experiments.sequential`; numpy and scipy only, no servers.
"""

from kfloop.experiments.prereg import ArmCounts, Preregistration
from kfloop.experiments.sequential import DECISIONS, Decision, Statistics, decision_codes, evaluate, statistics

__all__ = [
    "DECISIONS",
    "ArmCounts",
    "Decision",
    "Preregistration",
    "Statistics",
    "decision_codes",
    "evaluate",
    "statistics",
]

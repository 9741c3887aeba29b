"""Names every serving role shares (the InferenceService's model name, the explainer's identity)."""

MODEL_NAME = "kfloop-ranker"
"""The model name in V1/V2 routes (the InferenceService's name on a cluster)."""
EXPLAINER_NAME = "alibi-0.9.4:integrated-gradients/anchor-tabular"
"""The explainer recorded with every explanation."""

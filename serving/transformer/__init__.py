"""The transformer: version-agnostic feature lookup in front of the predictor (KServe's transformer component)."""

"""The predictor: a kserve.Model serving one model version with an exploration policy and a decision record."""

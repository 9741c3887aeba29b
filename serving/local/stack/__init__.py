"""`kfloop serve`: the local serving stack (transformer, predictors, explainer, audit sink, router)."""

"""Cold-start defaults: the value of every feature for a user or item the store does not know.

- Categorical context (OBD user features, item_feature_1..3): `names.UNKNOWN_CATEGORY` ("__unknown__"),
  which a vocabulary maps to its out-of-vocabulary bucket.
- Numeric item context (item_feature_0, standardized in the data): 0.0, its mean.
- Aggregates: what a user with no events in any window has: counts 0, CTR the prior mean
  a / (a + b) (2% by default), dwell and scroll depth 0, mean rating the prior mean (3.0).

So an unknown user looks exactly like a known one who has been quiet for longer than every window, and
the same defaults fill missing values in training sets (`training.py`) and online reads (`reader.py`).
"""

from __future__ import annotations

from typing import Any

from kfloop.features import names
from kfloop.features.aggregates import FeatureMath
from kfloop.features.config import AggregationConfig


def cold_start_defaults(config: AggregationConfig) -> dict[str, Any]:
    """{feature name: default} for every feature of every view."""
    math = FeatureMath(config)
    defaults: dict[str, Any] = dict.fromkeys(names.USER_CONTEXT_FEATURES, names.UNKNOWN_CATEGORY)
    defaults.update(dict.fromkeys(names.ITEM_NUMERIC_FEATURES, 0.0))
    defaults.update(dict.fromkeys(names.ITEM_CATEGORICAL_FEATURES, names.UNKNOWN_CATEGORY))
    defaults.update(math.empty(names.USER_PREFIX))
    defaults.update(math.empty(names.USER_ITEM_PREFIX))
    return defaults

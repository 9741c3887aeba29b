"""Hypothesis strategies for request bodies that are JSON but may be anything: the model servers must answer
each with a result or a 400 naming what is wrong, never with a crash (a 500). No tests here."""

from __future__ import annotations

from hypothesis import strategies as st

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value (the audit sink's and the model servers' junk bodies)."""
ids = st.text(min_size=1, max_size=12) | scalars
features = st.fixed_dictionaries(
    {},
    optional={
        "user": json_junk | st.dictionaries(st.sampled_from(["ui_clicks_7d", "user_feature_0", "x"]), scalars),
        "items": json_junk | st.dictionaries(st.sampled_from(["item_feature_1", "ui_clicks_7d"]), st.lists(scalars)),
        "items_mostly": json_junk
        | st.dictionaries(st.just("ui_clicks_7d"), st.fixed_dictionaries({"value": scalars, "except": json_junk})),
    },
)
instance = st.fixed_dictionaries(
    {},
    optional={
        "user_id": ids,
        "request_id": ids,
        "candidates": st.lists(ids, max_size=4) | json_junk,
        "k": st.integers(-2, 5) | scalars,
        "features": features | json_junk,
        "extra": scalars,
    },
)
ranking_bodies = json_junk | st.fixed_dictionaries(
    {}, optional={"instances": st.lists(instance, max_size=3) | json_junk, "parameters": json_junk}
)
explain_instance = st.fixed_dictionaries(
    {},
    optional={
        "model_version": ids | json_junk,
        "inputs": st.fixed_dictionaries(
            {},
            optional={
                "candidates": st.lists(ids, max_size=4) | json_junk,
                "k": st.integers(-2, 5) | scalars,
                "user": json_junk,
                "items": json_junk,
                "items_mostly": json_junk,
                "item_context": scalars,
            },
        )
        | json_junk,
        "slate": st.lists(ids, max_size=3) | json_junk,
        "candidates": st.lists(ids, max_size=4) | json_junk,
        "features": features | json_junk,
        "k": scalars,
    },
)
explain_bodies = json_junk | st.fixed_dictionaries(
    {}, optional={"instances": st.lists(explain_instance, max_size=2) | json_junk}
)

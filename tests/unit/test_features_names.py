"""Feature names, config validation, cold-start defaults, and the reader's entity keys vs Feast's."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from kfloop.features import names
from kfloop.features.config import AggregationConfig, FeaturesConfig, FollowerConfig, WindowConfig
from kfloop.features.defaults import cold_start_defaults
from kfloop.features.reader import entity_key_bytes

REPO = Path(__file__).resolve().parents[2]


def test_names_module_imports_only_the_standard_library() -> None:
    tree = ast.parse((REPO / "kfloop/features/names.py").read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses"}


def test_feature_names_are_unique_across_views() -> None:
    features = names.DEFAULT_FEATURES
    every = [n for view in names.ALL_VIEWS for n in features.view_features(view)]
    assert len(every) == len(set(every))
    assert set(every) == set(features.all_features)
    assert "u_ctr_1h" in every and "ui_clicks_7d" in every and "u_rating_mean_7d" in every


def test_kinds() -> None:
    features = names.DEFAULT_FEATURES
    assert features.kind("u_clicks_1d") == names.INT64
    assert features.kind("ui_ctr_7d") == names.FLOAT64
    assert features.kind("ui_thumbs_down_7d") == names.INT64
    assert features.kind("user_feature_2") == names.STRING
    assert features.kind("item_feature_0") == names.FLOAT64


def test_windows_come_from_config() -> None:
    config = AggregationConfig(
        windows=[WindowConfig(label="30m", seconds=1800), WindowConfig(label="2d", seconds=172_800)],
        explicit_window="2d",
    )
    assert config.feature_set().view_features(names.USER_EXPLICIT)[0] == "u_ratings_2d"
    assert "ui_scroll_depth_30m" in config.feature_set().item_features


@pytest.mark.parametrize(
    "bad",
    [
        {"explicit_window": "3d"},
        {"windows": [{"label": "1h", "seconds": 3600}, {"label": "1h", "seconds": 7200}], "explicit_window": "1h"},
        {"windows": [{"label": "90s", "seconds": 90}], "explicit_window": "90s"},  # not whole buckets
        {"ctr_prior_clicks": 0},
    ],
)
def test_invalid_aggregation_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        AggregationConfig(**bad)


def test_partition_index_must_be_below_the_count() -> None:
    with pytest.raises(ValidationError):
        FollowerConfig(partition_index=2, partition_count=2)


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        FeaturesConfig.model_validate({"store": {"online": "redis"}})


def test_cold_start_defaults_cover_every_feature() -> None:
    config = AggregationConfig()
    defaults = cold_start_defaults(config)
    assert set(defaults) == set(config.feature_set().all_features)
    assert defaults["user_feature_0"] == names.UNKNOWN_CATEGORY
    assert defaults["item_feature_3"] == names.UNKNOWN_CATEGORY
    assert defaults["item_feature_0"] == 0.0
    assert defaults["u_clicks_7d"] == 0 and isinstance(defaults["u_clicks_7d"], int)
    assert defaults["ui_ctr_1h"] == pytest.approx(0.02)
    assert defaults["u_rating_mean_7d"] == 3.0
    assert defaults["ui_dwell_s_1d"] == 0.0


@pytest.mark.parametrize(
    "entity",
    [{names.USER_ID: "obd-u-0123456789abcdef"}, {names.USER_ID: "u-1", names.ITEM_ID: "42"}, {names.ITEM_ID: "é"}],
)
def test_entity_key_bytes_match_feast(entity: dict) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key

    from kfloop.features.online_write import entity_key_proto
    from kfloop.features.store import ENTITY_KEY_SERIALIZATION_VERSION

    expected = serialize_entity_key(entity_key_proto(entity), ENTITY_KEY_SERIALIZATION_VERSION)
    assert entity_key_bytes(entity) == expected


def test_cached_pair_keys_equal_the_plain_serialization() -> None:
    from kfloop.features.reader import _PairKeys

    pair_keys = _PairKeys()
    for user in ("u-1", "obd-u-ffff", "ü"):
        expected = [entity_key_bytes({names.USER_ID: user, names.ITEM_ID: i}) for i in ("1", "79", "x")]
        assert pair_keys(user, ["1", "79", "x"]) == expected


def test_user_item_values_compact_and_dense_forms_agree():
    from kfloop.features.reader import UserItemValues

    values = UserItemValues(
        names=("ui_clicks_7d", "ui_ctr_7d"),
        defaults=np.array([0.0, 0.02]),
        kinds=(np.int64, np.float64),
        n=4,
        hits=([2, 0, 2], [0, 1, 1], [3, 0.5, None]),  # a value the store could not decode counts as missing
    )
    assert values.mostly() == {
        "ui_clicks_7d": {"value": 0, "except": [[2, 3]]},
        "ui_ctr_7d": {"value": 0.02, "except": [[0, 0.5]]},
    }
    dense = values.dense()
    assert dense["ui_clicks_7d"].tolist() == [0, 0, 3, 0] and dense["ui_clicks_7d"].dtype == np.int64
    assert dense["ui_ctr_7d"].tolist() == [0.5, 0.02, 0.02, 0.02]

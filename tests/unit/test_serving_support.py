"""Builders shared by the serving tests (no tests here): contract-model versions in a registry, built once per
test process (TensorFlow: a few seconds), and feature values shaped as the transformer sends them."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from kfloop.features import names
from kfloop.features.config import AggregationConfig
from kfloop.features.defaults import cold_start_defaults
from kfloop.registry import ModelRegistry

STRONG = "ui_clicks_7d"


@cache
def contract_registry() -> tuple[str, tuple[str, ...], Path]:
    """(registry uri, (blessed seed-0 version, blessed seed-1 version, unblessed seed-2 version), work dir)."""
    from tests.support.contract_model import ContractSpec, register

    root = Path(tempfile.mkdtemp(prefix="kfloop-serving-tests-"))
    atexit.register(shutil.rmtree, root, True)
    registry = ModelRegistry(root / "registry")
    start = datetime(2026, 11, 20, tzinfo=UTC)
    versions = tuple(
        register(
            registry,
            root / "work",
            ContractSpec(seed=seed),
            created_at=start + timedelta(minutes=seed),
            blessed=seed < 2,
        )
        for seed in range(3)
    )
    return registry.uri, versions, root


def features(n: int, *, strong_item: int | None = None, strong_value: int = 6) -> tuple[list[str], dict, dict]:
    """(candidates, user features, item features) for n items: cold-start values, item context varied, and
    optionally one item the user clicked `strong_value` times this week."""
    defaults = cold_start_defaults(AggregationConfig())
    feature_set = names.DEFAULT_FEATURES
    candidates = [str(i) for i in range(n)]
    user: dict[str, Any] = {name: defaults[name] for name in feature_set.user_features}
    items: dict[str, list[Any]] = {name: [defaults[name]] * n for name in feature_set.item_features}
    items["item_feature_0"] = [round((i % 7 - 3) / 3, 4) for i in range(n)]
    items["item_feature_1"] = [f"h{i % 3}" for i in range(n)]
    items["item_feature_2"] = [f"g{i % 2}" for i in range(n)]
    if strong_item is not None:
        items[STRONG] = [strong_value if i == strong_item else 0 for i in range(n)]
    return candidates, user, items

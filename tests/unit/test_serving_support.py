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


def recording_predictor(spool_dir: Path, policy: Any, version_index: int = 0, **audit: Any) -> Any:
    """A loaded RankerPredictor of a contract version whose decisions stay in its spool under `spool_dir` (its
    sink is a port nobody listens on); `policy` a PolicyConfig, `audit` more PredictorAuditConfig fields."""
    from kfloop.processes import free_port
    from serving.common.versions import resolve
    from serving.predictor.config import PredictorAuditConfig, PredictorConfig
    from serving.predictor.server import RankerPredictor

    uri, versions, root = contract_registry()
    sink = {"dir": str(spool_dir), "sink_url": f"http://127.0.0.1:{free_port()}", "retry_initial_s": 30}
    audit_config = PredictorAuditConfig.model_validate({"spool": sink, "drain_on_stop_s": 0, **audit})
    config = PredictorConfig(registry_uri=uri, cache_dir=root / "cache", policy=policy, audit=audit_config)
    model = RankerPredictor(config, resolve(uri, versions[version_index], None, config.cache_dir))
    model.load()
    return model

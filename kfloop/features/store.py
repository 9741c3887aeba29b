"""The Feast feature store, configured from `StoreConfig` (no YAML templating): open, apply, materialize.

Feast is imported inside functions: modules that only need names or defaults stay light.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from kfloop.features import names
from kfloop.features.config import FeaturesConfig, StoreConfig

REDIS_STORE_TYPE = "kfloop.features.redis_store.SubsecondRedisOnlineStore"
ENTITY_KEY_SERIALIZATION_VERSION = 2
MATERIALIZE_FROM = datetime(1970, 1, 2, tzinfo=UTC)


def online_store_settings(store: StoreConfig) -> dict[str, Any]:
    if store.online_store == "redis":
        # Feast's own Redis store keeps whole seconds and drops a second write within the same second.
        return {"type": REDIS_STORE_TYPE, "connection_string": store.redis}
    return {"type": "sqlite", "path": str(store.sqlite_file.resolve())}


def repo_config(store: StoreConfig) -> Any:
    from feast import RepoConfig

    return RepoConfig(
        project=store.project,
        provider="local",
        registry=str(store.registry_path.resolve()),
        online_store=online_store_settings(store),
        offline_store={"type": "file"},
        entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION,
        repo_path=str(store.repo_dir.resolve()),
    )


def open_store(store: StoreConfig) -> Any:
    """A feast.FeatureStore for this configuration."""
    from feast import FeatureStore

    store.repo_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(store.repo_dir.resolve()), config=repo_config(store))


def build_definitions(config: FeaturesConfig) -> Any:
    from kfloop.features.repo import build_repo

    return build_repo(config.store.offline_dir.resolve(), config.aggregation.feature_set())


def apply(config: FeaturesConfig) -> Any:
    """Register every definition and create the online tables; offline tables that do not exist yet are
    written (static context from the OBD files when present, empty aggregate tables otherwise)."""
    from kfloop.features.offline import ensure_offline_tables

    ensure_offline_tables(config)
    feature_store = open_store(config.store)
    feature_store.apply(build_definitions(config).objects())
    if config.store.online_store == "sqlite":
        use_wal_journal(config.store)
    return feature_store


def use_wal_journal(store: StoreConfig) -> None:
    """SQLite in WAL mode: the serving reader never waits for the feature updater's writes (persistent)."""
    with sqlite3.connect(store.sqlite_file) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


STATIC_VIEWS = [names.USER_CONTEXT, names.ITEM_CONTEXT]
"""Views whose only way into the online store is materialization: the follower streams the aggregates alone."""


def load_static_context(feature_store: Any) -> None:
    """User and item context into the online store. Without it serving reads the cold-start defaults for every
    context feature while training joins the real values from the offline tables (training/serving skew)."""
    materialize(feature_store, views=STATIC_VIEWS)


def materialize(feature_store: Any, end: datetime | None = None, views: list[str] | None = None) -> datetime:
    """Load the latest offline row of every entity (up to `end`, default now) into the online store."""
    end = end or datetime.now(UTC)
    feature_store.materialize(start_date=MATERIALIZE_FROM, end_date=end, feature_views=views or list(names.ALL_VIEWS))
    return end

"""`kfloop features apply | materialize | show USER_ID` handlers (`follow` is the follower's: serving/follower)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from kfloop.config import load_config
from kfloop.errors import InvalidInput
from kfloop.features.config import FeaturesConfig


def _load(args: argparse.Namespace) -> FeaturesConfig:
    # `materialize --log-uri` (a cluster Job: the site's object store, from params.env) over the file's value.
    overrides = {"event_log.log_uri": getattr(args, "log_uri", None)}
    return load_config(FeaturesConfig, getattr(args, "config", None), overrides)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--end {text!r} is not an ISO 8601 timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def apply(args: argparse.Namespace) -> int:
    from kfloop.features import names
    from kfloop.features.store import STATIC_VIEWS, load_static_context
    from kfloop.features.store import apply as apply_store

    config = _load(args)
    feature_store = apply_store(config)
    # apply writes the static context's offline tables; serving reads it online, where nothing else puts it
    load_static_context(feature_store)
    print(f"applied Feast project {config.store.project!r} in {config.store.repo_dir}")
    print(f"  online store: {config.store.online_store}; views: {', '.join(names.ALL_VIEWS)}")
    print(f"  feature services: {names.TRAINING_SERVICE}, {names.SERVING_SERVICE}")
    print(f"  {len(feature_store.list_feature_views())} feature views registered")
    print(f"  static context loaded into the online store: {', '.join(STATIC_VIEWS)}")
    return 0


def materialize(args: argparse.Namespace) -> int:
    from kfloop.features.offline import compute_aggregate_tables
    from kfloop.features.store import apply as apply_store
    from kfloop.features.store import materialize as materialize_store

    config = _load(args)
    end = _when(getattr(args, "end", None)) or datetime.now(UTC)
    feature_store = apply_store(config)
    for view, rows in compute_aggregate_tables(config, until=end).items():
        print(f"offline {view}: {rows} rows")
    materialize_store(feature_store, end=end)
    print(f"materialized every view up to {end.isoformat()}")
    return 0


def show(args: argparse.Namespace) -> int:
    from kfloop.features.reader import FeatureReader
    from kfloop.features.store import open_store

    config = _load(args)
    items = [i for i in (getattr(args, "items", None) or "").split(",") if i]
    reader = FeatureReader(open_store(config.store), config)
    try:
        read = reader.read(args.user_id, items)
    finally:
        reader.close()
    known = "known" if read.user_known else "unknown: cold-start defaults"
    print(f"user {read.user_id} ({known})")
    _print_values(read.user, reader.defaults)
    for index, item in enumerate(read.item_ids):
        context = "" if read.items_known[index] else " (no item context: defaults)"
        print(f"\nitem {item}{context}")
        _print_values({n: _scalar(column[index]) for n, column in read.items.items()}, reader.defaults)
    return 0


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # numpy scalar -> Python; str stays


def _print_values(values: dict[str, Any], defaults: dict[str, Any]) -> None:
    width = max((len(n) for n in values), default=0)
    for name, value in values.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        mark = "" if value != defaults.get(name) else "   (default)"
        print(f"  {name:<{width}}  {shown}{mark}")

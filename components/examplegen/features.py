"""The feature join of ExampleGen: point-in-time features from the Feast feature store.

Two implementations of the same join, chosen by `examples.feature_join`:

- `feast`: Feast's `get_historical_features` with the training FeatureService (the features side's
  `kfloop.features.training.historical_features`). The reference; the one to use with a warehouse offline
  store. Feast's file offline store costs ~5 ms per row here (86 s for 16,000 rows, measured).
- `asof` (default): the same join done with pandas `merge_asof` on the same offline Parquet tables Feast's
  FileSources read: per view, the latest row at or before the entity's timestamp on the view's join keys
  (the views have no TTL), cold-start defaults where there is none. Under a second for 20,000 rows; a test
  pins it equal to the Feast join.

Either way, each example's features are those known 1 us before its request's decision time (the earliest
impression of its request), so nothing the decision caused leaks into its own features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from kfloop.features import names
from kfloop.features.config import FeaturesConfig

Join = Callable[[pd.DataFrame], pd.DataFrame]
ROW_KEY = "event_id"  # Feast's training join sorts by (event_timestamp, event_id): our row key rides there

_VIEW_KEYS = {
    names.USER_CONTEXT: [names.USER_ID],
    names.USER_IMPLICIT: [names.USER_ID],
    names.USER_EXPLICIT: [names.USER_ID],
    names.ITEM_CONTEXT: [names.ITEM_ID],
    names.USER_ITEM_IMPLICIT: [names.USER_ID, names.ITEM_ID],
    names.USER_ITEM_EXPLICIT: [names.USER_ID, names.ITEM_ID],
}


def refresh_offline_tables(config: FeaturesConfig, *, until: Any) -> None:
    """Recompute the aggregate tables from the event log up to `until` (and the static context tables)."""
    from kfloop.features.offline import compute_aggregate_tables, ensure_offline_tables

    ensure_offline_tables(config)
    compute_aggregate_tables(config, until=until)


def feature_columns(config: FeaturesConfig) -> list[str]:
    """Every feature of the training FeatureService, in its order."""
    features = config.aggregation.feature_set()
    return [
        n for v in (*names.USER_ITEM_VIEWS, *names.USER_VIEWS, names.ITEM_CONTEXT) for n in features.view_features(v)
    ]


def asof_join(config: FeaturesConfig) -> Join:
    def join(entities: pd.DataFrame) -> pd.DataFrame:
        return _asof(entities, config)

    return join


def feast_join(config: FeaturesConfig) -> Join:
    def join(entities: pd.DataFrame) -> pd.DataFrame:
        from kfloop.features.store import apply
        from kfloop.features.training import historical_features

        keyed = entities.assign(**{ROW_KEY: [f"row{i:09d}" for i in range(len(entities))]})
        joined = historical_features(apply(config), keyed, config)
        return joined.set_index(ROW_KEY).loc[keyed[ROW_KEY]].reset_index(drop=True)

    return join


def _asof(entities: pd.DataFrame, config: FeaturesConfig) -> pd.DataFrame:
    from kfloop.features.defaults import cold_start_defaults

    features = config.aggregation.feature_set()
    defaults = cold_start_defaults(config.aggregation)
    ts = names.EVENT_TIMESTAMP
    left = entities.assign(_row=np.arange(len(entities)))
    left[ts] = pd.to_datetime(left[ts], utc=True)
    left = left.sort_values(ts, kind="stable")
    out = entities.copy()
    for view in (*names.USER_ITEM_VIEWS, *names.USER_VIEWS, names.ITEM_CONTEXT):
        wanted = list(features.view_features(view))
        table = _offline_table(config, view, [ts, *_VIEW_KEYS[view], *wanted])
        merged = pd.merge_asof(
            left[["_row", ts, *_VIEW_KEYS[view]]],
            table,
            on=ts,
            by=_VIEW_KEYS[view],
            direction="backward",
            allow_exact_matches=True,
        ).set_index("_row")
        for name in wanted:
            values = merged[name].reindex(np.arange(len(entities)))
            values = values.fillna(defaults[name]) if values.isna().any() else values
            if features.kind(name) == names.INT64:
                values = values.astype(np.int64)
            elif features.kind(name) == names.FLOAT64:
                values = values.astype(np.float64)
            out[name] = values.to_numpy()
    return out


def _offline_table(config: FeaturesConfig, view: str, columns: list[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(config.store.offline_dir / f"{view}.parquet", columns=columns).to_pandas()
    table[names.EVENT_TIMESTAMP] = pd.to_datetime(table[names.EVENT_TIMESTAMP], utc=True)
    # Where a key has two rows at one time, the later-written one wins (as it does in Feast's dedup).
    return table.sort_values(names.EVENT_TIMESTAMP, kind="stable")

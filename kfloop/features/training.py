"""Point-in-time-correct training sets: one row per impression, features as known before the decision.

Entity rows come from the event log's impressions: (user_id, item_id, event_timestamp). Feast's
`get_historical_features` joins each with the latest feature row at or before event_timestamp.

The timestamp rule (no leakage): event_timestamp = the decision time minus 1 microsecond, where the
decision time is the earliest impression of the same request_id (the impression's own ts without one).
Aggregate rows at the decision time already include what the decision caused: the impression itself,
the other slots of the same slate logged a few ms later, and a click stamped with its impression's time
(the OBD import does that). Ending 1 us before the decision leaves all of those out; feature rows are
stamped to the microsecond, so nothing earlier is lost.

Label: `clicked` is 1 when a click has the same request_id and item_id; for impressions without a
request_id, when the same user clicked the same item within `attribution_s` after it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from kfloop.errors import DataIntegrityError
from kfloop.features import names
from kfloop.features.config import FeaturesConfig
from kfloop.features.defaults import cold_start_defaults

LABEL = "clicked"
DECISION_OFFSET = pd.Timedelta(microseconds=1)
ENTITY_COLUMNS = ("event_id", "request_id", "position", "propensity", "policy", "model_version")


def _frame(events: pa.Table) -> pd.DataFrame:
    wanted = ["event_id", "type", "user_id", "item_id", "request_id", "ts", *ENTITY_COLUMNS[2:]]
    frame = events.select([c for c in dict.fromkeys(wanted) if c in events.column_names]).to_pandas()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def training_entities(events: pa.Table, *, attribution_s: float = 1800.0) -> pd.DataFrame:
    """Entity rows (and labels) of every impression in `events` (a table with the event log's columns)."""
    frame = _frame(events)
    impressions = frame[frame["type"] == "impression"].copy()
    clicks = frame[frame["type"] == "click"]
    decided = impressions.groupby("request_id", dropna=True)["ts"].min().rename("decision_ts")
    impressions = impressions.merge(decided, how="left", left_on="request_id", right_index=True)
    impressions["decision_ts"] = impressions["decision_ts"].fillna(impressions["ts"])
    impressions[names.EVENT_TIMESTAMP] = impressions["decision_ts"] - DECISION_OFFSET
    impressions[LABEL] = _labels(impressions, clicks, attribution_s)
    columns = [names.USER_ID, names.ITEM_ID, names.EVENT_TIMESTAMP, *ENTITY_COLUMNS, LABEL]
    out = impressions[[c for c in columns if c in impressions.columns]]
    return out.sort_values([names.EVENT_TIMESTAMP, "event_id"]).reset_index(drop=True)


def _labels(impressions: pd.DataFrame, clicks: pd.DataFrame, attribution_s: float) -> np.ndarray:
    by_request = set(
        zip(clicks["request_id"].dropna(), clicks.loc[clicks["request_id"].notna(), "item_id"], strict=True)
    )
    labels = np.array(
        [(r, i) in by_request for r, i in zip(impressions["request_id"], impressions["item_id"], strict=True)],
        dtype=np.int64,
    )
    orphans = impressions["request_id"].isna().to_numpy()
    if orphans.any() and len(clicks):
        left = impressions.loc[orphans, ["user_id", "item_id", "ts"]].reset_index().sort_values("ts")
        right = clicks[["user_id", "item_id", "ts"]].rename(columns={"ts": "click_ts"}).sort_values("click_ts")
        joined = pd.merge_asof(
            left,
            right,
            left_on="ts",
            right_on="click_ts",
            by=["user_id", "item_id"],
            direction="forward",
            tolerance=pd.Timedelta(seconds=attribution_s),
        )
        hit = joined.set_index("index")["click_ts"].notna()
        positions = impressions.index.get_indexer(hit.index)
        labels[positions] = hit.to_numpy().astype(np.int64)
    return labels


def historical_features(feature_store: Any, entities: pd.DataFrame, config: FeaturesConfig) -> pd.DataFrame:
    """Feast's point-in-time join of the training FeatureService onto entity rows; gaps get the
    cold-start defaults (a user or pair with no row before that time).

    Feast's file offline store de-duplicates entity rows on (join keys, timestamp), so each distinct
    (user, item, timestamp) is joined once and the features are merged back onto every entity row.
    """
    keys = [names.USER_ID, names.ITEM_ID, names.EVENT_TIMESTAMP]
    features = config.aggregation.feature_set()
    if entities.empty:
        return entities.reindex(columns=[*entities.columns, *features.all_features])
    entities = entities.copy()
    entities[names.EVENT_TIMESTAMP] = _utc_ns(entities[names.EVENT_TIMESTAMP])
    unique = entities[keys].drop_duplicates().reset_index(drop=True)
    service = feature_store.get_feature_service(names.TRAINING_SERVICE)
    joined = feature_store.get_historical_features(entity_df=unique, features=service).to_df()
    if len(joined) != len(unique):
        raise DataIntegrityError(f"the point-in-time join returned {len(joined)} rows for {len(unique)} entity rows")
    joined[names.EVENT_TIMESTAMP] = _utc_ns(joined[names.EVENT_TIMESTAMP])
    frame = entities.merge(joined, on=keys, how="left", validate="many_to_one")
    defaults = cold_start_defaults(config.aggregation)
    for name in features.all_features:
        frame[name] = frame[name].fillna(defaults[name])
        if features.kind(name) == names.INT64:
            frame[name] = frame[name].astype(np.int64)
    order = [*entities.columns, *features.all_features]
    return frame[order].sort_values([names.EVENT_TIMESTAMP, "event_id"]).reset_index(drop=True)


def build_training_set(config: FeaturesConfig, *, until: Any = None) -> pd.DataFrame:
    """The whole pipeline for a trainer: recompute the offline tables from the log, register the
    definitions, and join every impression's features as of its decision. `until`: a datetime, default now."""
    from kfloop.eventlog import read_events
    from kfloop.features.offline import compute_aggregate_tables
    from kfloop.features.store import apply

    compute_aggregate_tables(config, until=until)
    feature_store = apply(config)
    entities = training_entities(read_events(config.event_log.log_uri))
    return historical_features(feature_store, entities, config)


def _utc_ns(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).astype("datetime64[ns, UTC]")

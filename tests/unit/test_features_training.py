"""Training sets through Feast's point-in-time join: no row sees what was logged at or after its decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from kfloop.eventlog import EventLog, EventLogConfig, read_events
from kfloop.eventlog.wal import to_micros
from kfloop.features import names
from kfloop.features.config import FeaturesConfig, StoreConfig
from kfloop.features.defaults import cold_start_defaults
from kfloop.features.offline import aggregate_rows_at, compute_aggregate_tables, log_events
from kfloop.features.synthetic import feedback_record, synthetic_events
from kfloop.features.training import LABEL, historical_features, training_entities

T = datetime(2026, 11, 20, 12, 0, 0, 500_000, tzinfo=UTC)
US = timedelta(microseconds=1)


def crafted() -> list[dict]:
    return [
        feedback_record("r1-i3", "impression", "u1", "3", T, request_id="r1", position=1),
        feedback_record("r1-i5", "impression", "u1", "5", T + timedelta(milliseconds=3), request_id="r1", position=2),
        feedback_record("r1-c3", "click", "u1", "3", T, request_id="r1"),  # stamped with its impression's time
        feedback_record("rate", "rating", "u1", "3", T + timedelta(minutes=1), rating=5),
        feedback_record("r2-i3", "impression", "u1", "3", T + timedelta(minutes=10), request_id="r2", position=1),
        feedback_record("r2-c3", "click", "u1", "3", T + timedelta(minutes=10, seconds=5), request_id="r2"),
        feedback_record("r3-i4", "impression", "u1", "4", T + timedelta(minutes=10), request_id="r3", position=1),
        feedback_record("orphan", "impression", "u2", "1", T + timedelta(minutes=20)),
        feedback_record("orphan-c", "click", "u2", "1", T + timedelta(minutes=25)),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from kfloop.features.store import apply

    tmp = tmp_path_factory.mktemp("training")
    config = FeaturesConfig(
        event_log=EventLogConfig(wal_dir=tmp / "wal", log_uri=str(tmp / "log")),
        store=StoreConfig(repo_dir=tmp / "features", obd_data_dir=tmp / "no-data"),
    )
    records = crafted() + synthetic_events(200, users=4, items=4, end=T + timedelta(days=1), span=timedelta(days=3))
    with EventLog(config.event_log, writer_id="t") as log:
        log.append(records)
    feature_store = apply(config)
    compute_aggregate_tables(config, until=T + timedelta(days=10))
    entities = training_entities(read_events(config.event_log.log_uri))
    frame = historical_features(feature_store, entities, config)
    return config, feature_store, entities, frame


def row(frame: pd.DataFrame, event_id: str) -> pd.Series:
    [index] = frame.index[frame["event_id"] == event_id]
    return frame.loc[index]


def test_entity_timestamp_is_the_decision_time_minus_one_microsecond(built) -> None:
    _, _, entities, _ = built
    first, second = row(entities, "r1-i3"), row(entities, "r1-i5")
    assert first[names.EVENT_TIMESTAMP] == pd.Timestamp(T - US)
    assert second[names.EVENT_TIMESTAMP] == pd.Timestamp(T - US)  # the slate's decision, not its own log time
    assert row(entities, "orphan")[names.EVENT_TIMESTAMP] == pd.Timestamp(T + timedelta(minutes=20) - US)


def test_labels(built) -> None:
    _, _, entities, _ = built
    assert row(entities, "r1-i3")[LABEL] == 1
    assert row(entities, "r1-i5")[LABEL] == 0
    assert row(entities, "r2-i3")[LABEL] == 1
    assert row(entities, "r3-i4")[LABEL] == 0
    assert row(entities, "orphan")[LABEL] == 1  # same user and item clicked 5 min later, no request id


def test_a_row_never_sees_its_own_impression_or_the_click_it_caused(built) -> None:
    _, _, _, frame = built
    first = row(frame, "r1-i3")
    assert first["u_impressions_1h"] == 0 and first["u_clicks_1h"] == 0  # the click at T is not there
    assert first["ui_clicks_1h"] == 0
    assert row(frame, "r1-i5")["u_impressions_1h"] == 0  # nor the other slot of the same slate
    later = row(frame, "r2-i3")
    assert later["u_impressions_1h"] == 2 and later["u_clicks_1h"] == 1  # r1's, not r2's own click
    assert later["ui_impressions_1h"] == 1 and later["ui_clicks_1h"] == 1
    assert later["ui_ratings_7d"] == 1 and later["ui_rating_mean_7d"] == pytest.approx((5 + 6) / 3)


def test_rows_of_one_user_at_one_time_for_different_items_all_come_back(built) -> None:
    _, _, entities, frame = built
    assert len(frame) == len(entities)
    other = row(frame, "r3-i4")
    assert other["ui_impressions_1h"] == 0 and other["u_impressions_1h"] == 2


def test_without_the_offset_the_click_would_leak(built) -> None:
    """The rule matters: joined at the decision time itself, the row would see the click it caused."""
    _, feature_store, entities, _ = built
    leaky = entities[entities["event_id"] == "r1-i3"].copy()
    leaky[names.EVENT_TIMESTAMP] = pd.Timestamp(T)
    out = feature_store.get_historical_features(entity_df=leaky, features=["user_implicit:u_clicks_1h"]).to_df()
    assert out["u_clicks_1h"].iloc[0] == 1


def test_every_row_equals_a_recomputation_from_strictly_earlier_events(built) -> None:
    config, _, _, frame = built
    events = log_events(config.event_log)
    defaults = cold_start_defaults(config.aggregation)
    checked = 0
    for _, training_row in frame.iterrows():
        at = to_micros(training_row[names.EVENT_TIMESTAMP].to_pydatetime())
        before = [e for e in events if e["ts"] <= at]
        values = aggregate_rows_at(before, config.aggregation, at)
        user, item = training_row[names.USER_ID], training_row[names.ITEM_ID]
        expected = dict(defaults)
        for key in (("u", user), ("ui", user, item)):
            for by_view in values.get(key, {}).values():
                expected.update(by_view)
        for name in config.aggregation.feature_set().view_features(names.USER_IMPLICIT) + (
            config.aggregation.feature_set().view_features(names.USER_ITEM_EXPLICIT)
        ):
            assert training_row[name] == pytest.approx(expected[name], rel=0, abs=0), (training_row["event_id"], name)
        checked += 1
    assert checked > 100


def test_unknown_context_gets_cold_start_defaults(built) -> None:
    _, _, _, frame = built
    assert (frame["user_feature_0"] == names.UNKNOWN_CATEGORY).all()
    assert (frame["item_feature_0"] == 0.0).all()
    assert frame["u_clicks_7d"].dtype == "int64"

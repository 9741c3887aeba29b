"""Online features on SQLite and on a real Redis: the feature updater agrees with the offline tables,
decays without new events, survives restarts; the fast reader agrees with Feast; cold start; push."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from kfloop.eventlog import EventLog, EventLogConfig
from kfloop.eventlog.wal import to_micros
from kfloop.features import names
from kfloop.features.config import FeaturesConfig, FollowerConfig, StoreConfig
from kfloop.features.defaults import cold_start_defaults
from kfloop.features.synthetic import feedback_record, synthetic_events
from tests.support.features import write_obd_sample

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
USERS = [f"user-{n}" for n in range(5)]
ITEMS = [str(n) for n in range(6)]
HAS_REDIS_CLIENT = importlib.util.find_spec("redis") is not None


class Clock:
    """The follower's clock, moved by the test (no sleeping for windows)."""

    def __init__(self, at: datetime) -> None:
        self.us = to_micros(at)

    def __call__(self) -> int:
        return self.us

    def set(self, at: datetime) -> None:
        self.us = to_micros(at)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> FeaturesConfig:
    store = {"repo_dir": tmp_path / "features", "obd_data_dir": tmp_path / "data"}
    if request.param == "redis":
        if not HAS_REDIS_CLIENT:
            pytest.skip("the `redis` Python package is missing: the lock needs feast[redis] (redis, hiredis)")
        store.update(online_store="redis", redis=request.getfixturevalue("redis_server").address)
    write_obd_sample(tmp_path / "data")
    return FeaturesConfig(
        event_log=EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"), segment_max_events=7),
        store=StoreConfig(**store),
        # Segments of 7 events are sealed within milliseconds, often before a poll sees them; scanning
        # sealed files at every poll makes each step see everything appended before it.
        follower=FollowerConfig(sealed_scan_interval_s=0.0, startup_write_batch=7),
    )


@pytest.fixture
def feature_store(config: FeaturesConfig):
    from kfloop.features.store import apply, materialize

    store = apply(config)
    materialize(store, views=[names.USER_CONTEXT, names.ITEM_CONTEXT])
    return store


def expected_online(events: list[dict], config: FeaturesConfig, now: datetime) -> dict:
    """Offline recomputation: {(user, item): {feature: value}} from the log's events, as of now."""
    from kfloop.features.offline import aggregate_rows_at

    values = aggregate_rows_at(events, config.aggregation, to_micros(now))
    defaults = cold_start_defaults(config.aggregation)
    expected = {}
    for user in USERS:
        for item in ITEMS:
            merged = {
                n: defaults[n] for n in config.aggregation.feature_set().all_features if n.startswith(("u_", "ui_"))
            }
            for key in (("u", user), ("ui", user, item)):
                for by_view in values.get(key, {}).values():
                    merged.update(by_view)
            expected[(user, item)] = merged
    return expected


def online_values(reader, config: FeaturesConfig) -> dict:
    out = {}
    for user in USERS:
        read = reader.read(user, ITEMS)
        for index, item in enumerate(ITEMS):
            merged = {n: v for n, v in read.user.items() if n.startswith("u_")}
            merged.update({n: read.items[n][index].item() for n in read.items if n.startswith("ui_")})
            out[(user, item)] = merged
    return out


def historical_values(feature_store, config: FeaturesConfig, now: datetime) -> dict:
    """What Feast's point-in-time join over the offline tables gives at `now` (tables recomputed first)."""
    from kfloop.features.offline import compute_aggregate_tables
    from kfloop.features.training import historical_features

    compute_aggregate_tables(config, until=now)
    rows = [
        {names.USER_ID: u, names.ITEM_ID: i, names.EVENT_TIMESTAMP: now, "event_id": f"{u}/{i}"}
        for u in USERS
        for i in ITEMS
    ]
    frame = historical_features(feature_store, pd.DataFrame(rows), config)
    aggregates = [n for n in config.aggregation.feature_set().all_features if n.startswith(("u_", "ui_"))]
    return {(r[names.USER_ID], r[names.ITEM_ID]): {n: r[n] for n in aggregates} for _, r in frame.iterrows()}


def assert_same(online: dict, offline: dict) -> None:
    assert online.keys() == offline.keys()
    for key in offline:
        assert {n: online[key][n] for n in offline[key]} == offline[key], key


def test_online_values_agree_with_the_offline_tables_and_decay(config: FeaturesConfig, feature_store) -> None:
    from kfloop.features.offline import log_events
    from kfloop.features.reader import FeatureReader
    from serving.follower.follower import FeatureFollower

    events = sorted(synthetic_events(320, users=5, items=6, end=END), key=lambda r: r["ts"])
    early = [e for e in events if e["ts"] <= END - timedelta(days=4)]
    late = [e for e in events if e["ts"] > END - timedelta(days=4)]
    clock = Clock(END - timedelta(days=4))
    with EventLog(config.event_log, writer_id="c0") as c0, EventLog(config.event_log, writer_id="c1") as c1:
        c0.append(early)
        follower = FeatureFollower(config, feature_store, clock=clock)
        follower.start()
        reader = FeatureReader(feature_store, config)
        for start in range(0, len(late), 40):
            chunk = late[start : start + 40]
            c0.append(chunk[::2])
            c1.append(chunk[1::2] + chunk[:3])  # the first three arrive twice, through another replica
            clock.set(chunk[-1]["ts"])
            follower.step()
            assert_same(
                online_values(reader, config), expected_online(log_events(config.event_log), config, chunk[-1]["ts"])
            )
        for later in (timedelta(minutes=30), timedelta(hours=2), timedelta(days=2), timedelta(days=9)):
            clock.set(END + later)  # no new events: windows empty as time passes
            follower.step()
            online = online_values(reader, config)
            assert_same(online, historical_values(feature_store, config, END + later))
        assert online == expected_online([], config, END + later)  # everything decayed to the defaults
        follower.close()
        reader.close()


def test_a_restarted_updater_rebuilds_its_state_from_the_log(config: FeaturesConfig, feature_store) -> None:
    from kfloop.features.offline import log_events
    from kfloop.features.reader import FeatureReader
    from serving.follower.follower import FeatureFollower

    now = datetime.now(UTC).replace(microsecond=0)
    events = synthetic_events(120, users=5, items=6, end=now - timedelta(minutes=1), span=timedelta(days=2))
    old = now - timedelta(days=7, hours=6)  # inside the 7 d window before the restart, outside after it
    gone = [
        feedback_record("gone-c", "click", "gone-user", "5", old),
        feedback_record("gone-r", "rating", "gone-user", "5", old, rating=1),
    ]
    clock = Clock(now - timedelta(days=7))
    reader = FeatureReader(feature_store, config)
    with EventLog(config.event_log, writer_id="c0") as log:
        log.append(gone)
        first = FeatureFollower(config, feature_store, clock=clock)
        first.start()
        first.close()
        before = reader.read("gone-user", ["5"])
        assert before.user["u_clicks_7d"] == 1 and before.items["ui_rating_mean_7d"].tolist() == [(1 + 6) / 3]
        log.append(events)  # while the updater is down, events arrive and time passes
        clock.set(now)
        second = FeatureFollower(config, feature_store, clock=clock)
        second.start(write_all=False)  # as `follow` does: rebuilt keys are written between polls
        while second.backlog:
            second.step()
        assert_same(online_values(reader, config), expected_online(log_events(config.event_log), config, now))
        after = reader.read("gone-user", ["5"])  # its events left every window during the downtime
        defaults = cold_start_defaults(config.aggregation)
        assert after.user["u_clicks_7d"] == 0 and after.items["ui_rating_mean_7d"].tolist() == [
            defaults["ui_rating_mean_7d"]
        ]
        assert after.items["ui_ratings_7d"].tolist() == [0]
        second.close()
    reader.close()


def test_the_fast_reader_agrees_with_feast_get_online_features(config: FeaturesConfig, feature_store) -> None:
    from kfloop.features.reader import FeatureReader
    from kfloop.features.synthetic import iso  # noqa: F401  (same generator as the other tests)
    from serving.follower.follower import FeatureFollower

    now = datetime.now(UTC)
    with EventLog(config.event_log, writer_id="c0") as log:
        log.append(synthetic_events(150, users=5, items=6, end=now, span=timedelta(hours=20)))
    follower = FeatureFollower(config, feature_store, clock=lambda: to_micros(now))
    follower.start()
    follower.close()
    reader = FeatureReader(feature_store, config)
    defaults = cold_start_defaults(config.aggregation)
    service = feature_store.get_feature_service(names.SERVING_SERVICE)
    obd_user = _obd_user_id(0)
    for user in [*USERS, obd_user]:
        fast = reader.read(user, ITEMS)
        rows = [{names.USER_ID: user, names.ITEM_ID: i} for i in ITEMS]
        feast = feature_store.get_online_features(features=service, entity_rows=rows).to_dict()
        for name, value in fast.user.items():
            assert all(_or_default(v, defaults[name]) == value for v in feast[name]), (user, name)
        for name, column in fast.items.items():
            assert [_or_default(v, defaults[name]) for v in feast[name]] == column.tolist(), (user, name)
    assert reader.read(obd_user, ["1"]).user["user_feature_0"] == "a0"
    reader.close()


def _obd_user_id(row: int) -> str:
    from kfloop.data.import_obd import user_id_of

    return user_id_of((f"a{row}", "b", "c", "d"))


def _or_default(value, default):
    return default if value is None else value


def test_unknown_users_and_items_get_the_cold_start_defaults(config: FeaturesConfig, feature_store) -> None:
    from kfloop.features.reader import FeatureReader

    reader = FeatureReader(feature_store, config)
    defaults = cold_start_defaults(config.aggregation)
    read = reader.read("never-seen", ["2", "no-such-item"])
    assert not read.user_known
    assert read.items_known.tolist() == [True, False]
    assert read.user == {n: defaults[n] for n in config.aggregation.feature_set().user_features}
    assert read.items["item_feature_1"].tolist() == ["h0", names.UNKNOWN_CATEGORY]
    assert read.items["item_feature_0"].tolist() == [0.2, 0.0]
    assert read.items["ui_ctr_7d"].tolist() == [defaults["ui_ctr_7d"]] * 2
    assert reader.read("never-seen", []).items["ui_clicks_1h"].shape == (0,)
    assert not reader.reload_items_if_materialized()
    from kfloop.features.store import materialize

    materialize(feature_store, views=[names.ITEM_CONTEXT])
    assert reader.reload_items_if_materialized()
    reader.close()


def test_materialized_offline_tables_give_the_same_online_values(config: FeaturesConfig, feature_store, tmp_path: Path):
    from kfloop.features.offline import compute_aggregate_tables
    from kfloop.features.reader import FeatureReader
    from kfloop.features.store import apply, materialize
    from serving.follower.follower import FeatureFollower

    now = datetime.now(UTC)
    with EventLog(config.event_log, writer_id="c0") as log:
        log.append(synthetic_events(150, users=5, items=6, end=now, span=timedelta(days=3)))
    follower = FeatureFollower(config, feature_store, clock=lambda: to_micros(now))
    follower.start()
    follower.close()
    other = config.model_copy(deep=True)
    other.store.sqlite_path = tmp_path / "other.db"
    other.store.redis = config.store.redis + ",db=1"  # a second, empty Redis database
    other_store = apply(other)
    compute_aggregate_tables(other, until=now)
    materialize(other_store, end=now + timedelta(microseconds=1))
    streamed, materialized = FeatureReader(feature_store, config), FeatureReader(other_store, other)
    assert online_values(streamed, config) == online_values(materialized, other)
    streamed.close()
    materialized.close()


def test_a_push_to_a_push_source_reaches_the_reader(config: FeaturesConfig, feature_store) -> None:
    from feast.data_source import PushMode

    from kfloop.features.reader import FeatureReader

    features = config.aggregation.feature_set()
    row = {n: 0.5 if features.kind(n) == names.FLOAT64 else 7 for n in features.view_features(names.USER_IMPLICIT)}
    frame = pd.DataFrame([{names.USER_ID: "pushed", names.EVENT_TIMESTAMP: datetime.now(UTC), **row}])
    feature_store.push(names.push_source(names.USER_IMPLICIT), frame, to=PushMode.ONLINE)
    reader = FeatureReader(feature_store, config)
    read = reader.read("pushed", [])
    assert read.user["u_clicks_1h"] == 7 and read.user["u_ctr_7d"] == 0.5
    reader.close()


@pytest.mark.parametrize("config", ["redis"], indirect=True)
def test_redis_keeps_the_later_of_two_updates_200_ms_apart(config: FeaturesConfig, feature_store) -> None:
    from kfloop.features.aggregates import user_key
    from kfloop.features.online_write import OnlineWriter
    from kfloop.features.reader import FeatureReader

    writer = OnlineWriter(feature_store)
    features = config.aggregation.feature_set()
    first = {n: (1 if features.kind(n) == names.INT64 else 0.1) for n in features.view_features(names.USER_IMPLICIT)}
    second = {n: (2 if features.kind(n) == names.INT64 else 0.2) for n in first}
    at = datetime(2026, 11, 20, 12, 0, 0, 100_000, tzinfo=UTC)
    writer.write([(user_key("u1"), {names.USER_IMPLICIT: first})], at)
    writer.write([(user_key("u1"), {names.USER_IMPLICIT: second})], at + timedelta(milliseconds=200))
    reader = FeatureReader(feature_store, config)
    assert reader.read("u1", []).user["u_clicks_1h"] == 2
    # An older row (e.g. from materializing offline tables) never replaces a newer one.
    writer.write([(user_key("u1"), {names.USER_IMPLICIT: first})], at + timedelta(milliseconds=150))
    assert reader.read("u1", []).user["u_clicks_1h"] == 2
    view = feature_store.get_feature_view(names.USER_IMPLICIT)
    provider = feature_store._get_provider()
    from kfloop.features.online_write import entity_key_proto

    [(stamp, _)] = provider.online_store.online_read(
        feature_store.config, view, [entity_key_proto({names.USER_ID: "u1"})], ["u_clicks_1h"]
    )
    assert stamp == at + timedelta(milliseconds=200)  # kept to the microsecond
    reader.close()

"""Offline aggregate tables: the latest row at or before any time is that time's value."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from kfloop.eventlog import EventLog, EventLogConfig
from kfloop.eventlog.wal import to_micros
from kfloop.features import names
from kfloop.features.aggregates import entity_of, views_of
from kfloop.features.config import AggregationConfig, WindowConfig
from kfloop.features.offline import (
    STATIC_TIMESTAMP_US,
    aggregate_rows_at,
    log_events,
    records_of,
    replay,
    rows_to_table,
    write_table,
)
from kfloop.features.synthetic import feedback_record, synthetic_events

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def config() -> AggregationConfig:
    windows = [WindowConfig(label="1h", seconds=3600), WindowConfig(label="1d", seconds=86_400)]
    return AggregationConfig(windows=windows, explicit_window="1d", bucket_s=60)


def events_us(records: list[dict]) -> list[dict]:
    out = [{**r, "ts": to_micros(r["ts"])} for r in records]
    return sorted(out, key=lambda e: (e["ts"], e["event_id"]))


def latest_at(rows: list[dict], keys: dict, at_us: int) -> dict | None:
    best = None
    for row in rows:
        matches = all(row[k] == v for k, v in keys.items()) and row[names.EVENT_TIMESTAMP] <= at_us
        if matches and (best is None or row[names.EVENT_TIMESTAMP] >= best[names.EVENT_TIMESTAMP]):
            best = row
    return best


def test_latest_offline_row_equals_a_recomputation_at_any_time() -> None:
    events = events_us(synthetic_events(150, users=3, items=3, end=END, span=timedelta(days=2)))
    until = to_micros(END + timedelta(days=2))
    rows = replay(events, config(), until_us=until)
    rng = random.Random(1)
    probes = [rng.randrange(events[0]["ts"] - 10**6, until) for _ in range(25)]
    probes += [e["ts"] for e in events[::15]] + [e["ts"] - 1 for e in events[::15]]
    for at in probes:
        expected = aggregate_rows_at(events, config(), at)
        for key, by_view in expected.items():
            for view, values in by_view.items():
                row = latest_at(rows[view], entity_of(key), at)
                got = {n: row[n] for n in values} if row else None
                if got is None:  # never emitted: the values must be the empty ones
                    assert values == aggregate_empty(view), (at, key, view)
                else:
                    assert got == values, (at, key, view)


def aggregate_empty(view: str) -> dict:
    from kfloop.features.aggregates import FeatureMath

    prefix = names.USER_ITEM_PREFIX if view in names.USER_ITEM_VIEWS else names.USER_PREFIX
    return {
        n: v for n, v in FeatureMath(config()).empty(prefix).items() if n in config().feature_set().view_features(view)
    }


def test_values_decay_to_empty_rows_after_the_longest_window() -> None:
    events = events_us([feedback_record("a", "click", "u1", "3", END)])
    rows = replay(events, config(), until_us=to_micros(END + timedelta(days=3)))
    baseline, *user_rows = rows[names.USER_IMPLICIT]
    assert baseline[names.EVENT_TIMESTAMP] == STATIC_TIMESTAMP_US and baseline["u_clicks_1d"] == 0
    assert [r["u_clicks_1h"] for r in user_rows] == [1, 0, 0]
    assert [r["u_clicks_1d"] for r in user_rows] == [1, 1, 0]
    assert user_rows[-1]["u_ctr_1d"] == config().ctr_prior_mean


def test_every_key_starts_with_its_empty_values_before_any_event() -> None:
    events = events_us(synthetic_events(60, end=END))
    rows = replay(events, config(), until_us=to_micros(END))
    for view, view_rows in rows.items():
        firsts: dict = {}
        for r in view_rows:
            firsts.setdefault((r[names.USER_ID], r.get(names.ITEM_ID)), r)
        assert all(r[names.EVENT_TIMESTAMP] == STATIC_TIMESTAMP_US for r in firsts.values()), view
        assert all({n: r[n] for n in aggregate_empty(view)} == aggregate_empty(view) for r in firsts.values())


def test_no_two_rows_share_an_entity_and_timestamp() -> None:
    base = END
    records = [feedback_record(f"e{n}", "click", "u1", "3", base + timedelta(seconds=n)) for n in range(5)]
    # an event exactly when an earlier bucket leaves the 1 h window: one row for both
    records.append(feedback_record("late", "impression", "u1", "3", base.replace(second=0) + timedelta(hours=1)))
    rows = replay(events_us(records), config(), until_us=to_micros(base + timedelta(days=2)))
    for view, view_rows in rows.items():
        stamps = [(r[names.USER_ID], r.get(names.ITEM_ID), r[names.EVENT_TIMESTAMP]) for r in view_rows]
        assert len(stamps) == len(set(stamps)), view


def test_explicit_views_get_rows_only_for_explicit_feedback() -> None:
    records = [
        feedback_record("i", "impression", "u1", "3", END),
        feedback_record("r", "rating", "u2", "4", END, rating=5),
    ]
    rows = replay(events_us(records), config(), until_us=to_micros(END + timedelta(minutes=5)))
    assert {r[names.USER_ID] for r in rows[names.USER_EXPLICIT]} == {"u2"}
    assert rows[names.USER_ITEM_EXPLICIT][0]["ui_rating_mean_1d"] == 3.0  # the empty baseline row
    assert rows[names.USER_ITEM_EXPLICIT][1]["ui_rating_mean_1d"] == (5 + 2 * 3.0) / 3
    assert views_of(("ui", "u2", "4")) == (names.USER_ITEM_IMPLICIT, names.USER_ITEM_EXPLICIT)


def test_tables_round_trip_through_parquet(tmp_path: Path) -> None:
    events = events_us(synthetic_events(40, end=END))
    rows = replay(events, config(), until_us=to_micros(END))
    features = config().feature_set()
    for view in names.AGGREGATE_VIEWS:
        path = tmp_path / f"{view}.parquet"
        write_table(path, rows_to_table(view, rows.get(view, []), features))
        table = pq.read_table(path)
        assert table.column_names[:2] == [names.EVENT_TIMESTAMP, names.USER_ID]
        assert table.num_rows == len(rows.get(view, []))
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_log_events_reads_sealed_and_write_ahead_events_once(tmp_path: Path) -> None:
    log_config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"))
    first = [feedback_record(f"s{n}", "click", "u1", "3", END + timedelta(seconds=n)) for n in range(3)]
    with EventLog(log_config, writer_id="a") as log:
        log.append(first)
    log = EventLog(log_config, writer_id="b").open()
    try:
        log.append([feedback_record("w1", "click", "u1", "3", END - timedelta(seconds=1)), first[0]])
        events = log_events(log_config)
    finally:
        log.close()
    assert [e["event_id"] for e in events] == ["w1", "s0", "s1", "s2"]
    assert all(isinstance(e["ts"], int) for e in events)


def test_records_of_converts_timestamps_to_microseconds() -> None:
    from kfloop.events.record import records_to_table

    record = feedback_record("x", "click", "u", "1", END)
    assert records_of(records_to_table([record]))[0]["ts"] == to_micros(END)

"""Windowed counters and aggregates: bucket semantics, late events, dedup, smoothing, partitions."""

from __future__ import annotations

import random

import pytest

from kfloop.features import names
from kfloop.features.aggregates import Aggregator, FeatureMath, in_partition, user_item_key, user_key
from kfloop.features.config import AggregationConfig, WindowConfig
from kfloop.features.windows import SLOT, WindowedCounters, increments

S = 1_000_000  # one second in microseconds


def click(ts_us: int, event_id: str = "e1", user: str = "u1", item: str | None = "7") -> dict:
    return {"event_id": event_id, "type": "click", "user_id": user, "item_id": item, "ts": ts_us}


def small_config(**overrides) -> AggregationConfig:
    windows = [WindowConfig(label="2m", seconds=120), WindowConfig(label="10m", seconds=600)]
    return AggregationConfig(windows=windows, explicit_window="10m", bucket_s=60, **overrides)


def test_an_event_leaves_the_window_with_its_bucket() -> None:
    counters = WindowedCounters((120,), 60)
    counters.add("k", 90 * S, increments(click(90 * S)))  # bucket 1: [60 s, 120 s)
    list(counters.advance(179 * S + 999_999))
    assert counters.sums("k")[0][SLOT["clicks"]] == 1
    changes = list(counters.advance(180 * S))  # (1 + 2 buckets) * 60 s
    assert changes == [(180 * S, {"k"})]
    assert counters.sums("k")[0][SLOT["clicks"]] == 0
    assert "k" not in counters  # gone from the longest window: state dropped


def test_windows_expire_in_time_order_and_sums_are_as_of_each_time() -> None:
    counters = WindowedCounters((60, 180), 60)
    counters.add("k", 0, increments(click(0)))
    seen = []
    for at, keys in counters.advance(10_000 * S):
        seen.append((at, sorted(keys), [row[SLOT["clicks"]] for row in counters.sums("k")]))
    assert seen == [(60 * S, ["k"], [0, 1]), (180 * S, ["k"], [0, 0])]


def test_a_late_event_counts_only_in_windows_it_is_still_inside() -> None:
    counters = WindowedCounters((60, 600), 60)
    list(counters.advance(300 * S))
    assert counters.add("k", 10 * S, increments(click(10 * S)))
    sums = counters.sums("k")
    assert sums[0][SLOT["clicks"]] == 0 and sums[1][SLOT["clicks"]] == 1
    assert not counters.add("k", 10 * S - 600 * S, increments(click(0)))  # too old for every window


def test_events_from_the_future_count_at_once() -> None:
    counters = WindowedCounters((60,), 60)
    list(counters.advance(100 * S))
    counters.add("k", 1000 * S, increments(click(1000 * S)))
    assert counters.sums("k")[0][SLOT["clicks"]] == 1


def test_sums_do_not_depend_on_arrival_order() -> None:
    rng = random.Random(3)
    events = [
        {"event_id": f"e{n}", "type": kind, "user_id": "u", "item_id": "1", "ts": rng.randrange(0, 900 * S), **extra}
        for n, (kind, extra) in enumerate(
            [("impression", {}), ("click", {}), ("dwell", {"dwell_ms": 1234}), ("scroll", {"scroll_depth": 0.37})] * 40
        )
    ]
    results = []
    for seed in range(3):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        aggregator = Aggregator(small_config())
        aggregator.advance_all(900 * S)
        aggregator.ingest(shuffled)
        results.append(aggregator.values(user_item_key("u", "1")))
    assert results[0] == results[1] == results[2]


def test_each_event_id_counts_once_and_irrelevant_events_are_ignored() -> None:
    aggregator = Aggregator(small_config())
    aggregator.advance_all(100 * S)
    touched = aggregator.ingest([click(50 * S), click(50 * S), click(60 * S, event_id="e2")])
    assert touched == {user_key("u1"), user_item_key("u1", "7")}
    assert aggregator.values(user_key("u1"))[names.USER_IMPLICIT]["u_clicks_2m"] == 2
    survey = {"event_id": "s", "type": "survey", "user_id": "u1", "item_id": None, "ts": 50 * S}
    conversion = {"event_id": "c", "type": "conversion", "user_id": "u1", "item_id": "7", "ts": 50 * S}
    assert aggregator.ingest([survey, conversion]) == set()


def test_an_event_without_an_item_counts_for_the_user_only() -> None:
    aggregator = Aggregator(small_config())
    assert aggregator.ingest([click(0, item=None)]) == {user_key("u1")}


def test_expired_events_touch_keys_only_when_asked() -> None:
    aggregator = Aggregator(small_config())
    aggregator.advance_all(10_000 * S)
    assert aggregator.ingest([click(0)]) == set()
    assert aggregator.ingest([click(0, event_id="e9")], touch_expired=True) == {
        user_key("u1"),
        user_item_key("u1", "7"),
    }


def test_seen_ids_are_forgotten_once_older_than_every_window() -> None:
    aggregator = Aggregator(small_config())
    aggregator.ingest([click(0)])
    aggregator.advance_all(599 * S)
    assert "e1" in aggregator._seen
    aggregator.advance_all(600 * S)
    assert "e1" not in aggregator._seen


def test_feature_math_smooths_ctr_and_averages_dwell_scroll_and_ratings() -> None:
    math = FeatureMath(small_config())
    sums = [[0] * len(SLOT) for _ in range(2)]
    row = sums[0]
    row[SLOT["impressions"]], row[SLOT["clicks"]] = 10, 3
    row[SLOT["dwells"]], row[SLOT["dwell_ms"]] = 2, 5000
    row[SLOT["scrolls"]], row[SLOT["scroll_micros"]] = 4, 2_000_000
    values = math.implicit("u", sums)
    assert values["u_ctr_2m"] == pytest.approx((3 + 1) / (10 + 50))
    assert values["u_dwell_s_2m"] == 2.5
    assert values["u_scroll_depth_2m"] == 0.5
    assert values["u_ctr_10m"] == pytest.approx(1 / 50)  # the prior mean
    sums[1][SLOT["ratings"]], sums[1][SLOT["rating_sum"]] = 2, 10
    explicit = math.explicit("ui", sums)
    assert explicit["ui_rating_mean_10m"] == pytest.approx((10 + 2 * 3.0) / (2 + 2))
    assert explicit["ui_ratings_10m"] == 2


def test_smoothed_ctr_never_exceeds_one() -> None:
    math = FeatureMath(small_config())
    sums = [[0] * len(SLOT) for _ in range(2)]
    sums[0][SLOT["clicks"]] = 500  # clicks whose impressions left the window earlier
    assert math.implicit("u", sums)["u_ctr_2m"] == 1.0


def test_partitions_split_users_between_updaters() -> None:
    users = [f"user-{n}" for n in range(200)]
    owners = [[p for p in range(3) if in_partition(u, p, 3)] for u in users]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}
    aggregator = Aggregator(small_config(), partition=(owners[0][0], 3))
    assert aggregator.ingest([click(0, user=users[0])])
    other = next(u for u, o in zip(users, owners, strict=True) if o != owners[0])
    assert not aggregator.ingest([click(0, event_id="x", user=other)])

"""Feedback events -> windowed aggregate feature values, per user and per user x item.

The feature updater (online) and the offline computation both go through `Aggregator`, so the same
events give the same values on both sides.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from kfloop.features import names
from kfloop.features.config import AggregationConfig
from kfloop.features.windows import SLOT, WindowedCounters, increments

UserKey = tuple[str, str]  # ("u", user_id)
UserItemKey = tuple[str, str, str]  # ("ui", user_id, item_id)
Key = UserKey | UserItemKey

EVENT_FIELDS = ("event_id", "type", "user_id", "item_id", "ts", "dwell_ms", "scroll_depth", "rating", "thumb")
"""The event-log columns the aggregates read (ts in epoch microseconds)."""


def user_key(user_id: str) -> UserKey:
    return (names.USER_PREFIX, user_id)


def user_item_key(user_id: str, item_id: str) -> UserItemKey:
    return (names.USER_ITEM_PREFIX, user_id, item_id)


def keys_of(record: dict[str, Any]) -> list[Key]:
    """The keys an event counts for: its user, and its user x item pair when it names an item."""
    keys: list[Key] = [user_key(record["user_id"])]
    if record.get("item_id") is not None:
        keys.append(user_item_key(record["user_id"], record["item_id"]))
    return keys


def views_of(key: Key) -> tuple[str, str]:
    """The (implicit, explicit) feature views a key's values go to."""
    if key[0] == names.USER_PREFIX:
        return names.USER_IMPLICIT, names.USER_EXPLICIT
    return names.USER_ITEM_IMPLICIT, names.USER_ITEM_EXPLICIT


def entity_of(key: Key) -> dict[str, str]:
    if key[0] == names.USER_PREFIX:
        return {names.USER_ID: key[1]}
    return {names.USER_ID: key[1], names.ITEM_ID: key[2]}


def in_partition(user_id: str, index: int, count: int) -> bool:
    """Stable assignment of users to feature updater processes."""
    return count == 1 or zlib.crc32(user_id.encode()) % count == index


class FeatureMath:
    """Counter sums -> feature values (smoothed CTR, means), named as in `names`."""

    def __init__(self, config: AggregationConfig) -> None:
        self.config = config
        self.features = config.feature_set()
        self.labels = tuple(w.label for w in config.windows)
        self.explicit_index = self.labels.index(config.explicit_window)
        self._prior_a = config.ctr_prior_clicks
        self._prior_ab = config.ctr_prior_clicks + config.ctr_prior_non_clicks

    def implicit(self, prefix: str, sums: Iterable[Iterable[int]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, window in zip(self.labels, sums, strict=True):
            counts = list(window)
            impressions, clicks = counts[SLOT["impressions"]], counts[SLOT["clicks"]]
            dwells, scrolls = counts[SLOT["dwells"]], counts[SLOT["scrolls"]]
            out[names.feature_name(prefix, "impressions", label)] = impressions
            out[names.feature_name(prefix, "clicks", label)] = clicks
            ctr = min(1.0, (clicks + self._prior_a) / (impressions + self._prior_ab))
            out[names.feature_name(prefix, "ctr", label)] = ctr
            dwell_s = counts[SLOT["dwell_ms"]] / dwells / 1000.0 if dwells else 0.0
            out[names.feature_name(prefix, "dwell_s", label)] = dwell_s
            depth = counts[SLOT["scroll_micros"]] / scrolls / 1_000_000 if scrolls else 0.0
            out[names.feature_name(prefix, "scroll_depth", label)] = depth
        return out

    def explicit(self, prefix: str, sums: Iterable[Iterable[int]]) -> dict[str, Any]:
        counts = list(list(sums)[self.explicit_index])
        label = self.config.explicit_window
        ratings, weight = counts[SLOT["ratings"]], self.config.rating_prior_weight
        prior = self.config.rating_prior_mean
        mean = (counts[SLOT["rating_sum"]] + weight * prior) / (ratings + weight) if ratings + weight else prior
        return {
            names.feature_name(prefix, "ratings", label): ratings,
            names.feature_name(prefix, "rating_mean", label): mean,
            names.feature_name(prefix, "thumbs_up", label): counts[SLOT["thumbs_up"]],
            names.feature_name(prefix, "thumbs_down", label): counts[SLOT["thumbs_down"]],
        }

    def empty(self, prefix: str) -> dict[str, Any]:
        """Values of a key with no events in any window (also the cold-start defaults)."""
        return {**self.implicit(prefix, self._zeros()), **self.explicit(prefix, self._zeros())}

    def empty_explicit(self, prefix: str) -> dict[str, Any]:
        return self.explicit(prefix, self._zeros())

    def _zeros(self) -> list[list[int]]:
        return [[0] * len(SLOT) for _ in self.labels]


class Aggregator:
    """Windowed counters of users and user x item pairs, fed with event-log records."""

    def __init__(self, config: AggregationConfig, *, partition: tuple[int, int] = (0, 1)) -> None:
        self.math = FeatureMath(config)
        self.counters = WindowedCounters(tuple(w.seconds for w in config.windows), config.bucket_s)
        self.partition = partition
        self._seen: set[str] = set()
        self._seen_by_bucket: dict[int, list[str]] = {}
        self._seen_buckets: list[int] = []

    @property
    def now_us(self) -> int:
        return self.counters.now_us

    def ingest(self, records: Iterable[dict[str, Any]], *, touch_expired: bool = False) -> set[Key]:
        """Count new events (each event_id once) at the current time; the keys they touched.

        With touch_expired, keys of events too old for every window are returned too (their values are
        the empty ones): on restart, that is how keys whose windows emptied meanwhile get written back.
        """
        touched: set[Key] = set()
        for record in records:
            user_id = record["user_id"]
            if not in_partition(user_id, *self.partition):
                continue
            event_id = record["event_id"]
            counts = increments(record)
            if counts is None or event_id in self._seen:
                continue
            keys = keys_of(record)
            if not self.counters.counts_in_window(record["ts"]):
                if touch_expired:
                    touched.update(keys)
                continue
            self._remember(event_id, record["ts"])
            for key in keys:
                self.counters.add(key, record["ts"], counts)
                touched.add(key)
        return touched

    def advance(self, now_us: int) -> Iterator[tuple[int, set[Key]]]:
        """Move to now_us, yielding (time, keys whose values changed then) as buckets leave windows."""
        yield from self.counters.advance(now_us)  # type: ignore[misc]
        self._forget_old_ids()

    def advance_all(self, now_us: int) -> set[Key]:
        changed: set[Key] = set()
        for _, keys in self.advance(now_us):
            changed |= keys
        return changed

    def values(self, key: Key) -> dict[str, dict[str, Any]]:
        """{view: {feature: value}} of a key, as of the current time."""
        sums = self.counters.sums(key)
        implicit_view, explicit_view = views_of(key)
        prefix = key[0]
        return {implicit_view: self.math.implicit(prefix, sums), explicit_view: self.math.explicit(prefix, sums)}

    def live_keys(self) -> list[Key]:
        return self.counters.keys()  # type: ignore[return-value]

    def _remember(self, event_id: str, ts_us: int) -> None:
        bucket = self.counters.bucket_of(ts_us)
        self._seen.add(event_id)
        ids = self._seen_by_bucket.get(bucket)
        if ids is None:
            ids = self._seen_by_bucket[bucket] = []
            heapq.heappush(self._seen_buckets, bucket)
        ids.append(event_id)

    def _forget_old_ids(self) -> None:
        # An id older than every window cannot change a value again, so it need not be remembered.
        while self._seen_buckets and not self.counters.counts_in_window(
            self._seen_buckets[0] * self.counters.bucket_us
        ):
            for event_id in self._seen_by_bucket.pop(heapq.heappop(self._seen_buckets)):
                self._seen.discard(event_id)

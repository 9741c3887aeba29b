"""Time-bucketed counters with running sums over sliding windows of event time.

One `WindowedCounters` serves both sides: the feature updater feeds it events as they arrive and asks
for the windows at wall-clock now; the offline computation replays the log through it in event-time
order. All counters are integers (dwell in ms, scroll depth in millionths), so the order events arrive
in cannot change a sum: online and offline agree exactly.

Semantics. Time is in epoch microseconds. Bucket b holds the events with floor(ts / bucket) == b. At time
`now`, the window of n buckets holds every bucket b > floor(now / bucket) - n: bucket b leaves the
window at exactly (b + n) * bucket. Buckets later than now (a producer's clock ahead) count at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from typing import Any

# Counter slots of one bucket.
COUNTERS = (
    "impressions",
    "clicks",
    "dwells",
    "dwell_ms",
    "scrolls",
    "scroll_micros",
    "ratings",
    "rating_sum",
    "thumbs_up",
    "thumbs_down",
)
SLOT = {name: index for index, name in enumerate(COUNTERS)}
_ZERO = (0,) * len(COUNTERS)


def increments(record: dict[str, Any]) -> tuple[int, ...] | None:
    """What one event adds to the counters, or None if it adds nothing."""
    kind = record["type"]
    counts = list(_ZERO)
    if kind == "impression":
        counts[SLOT["impressions"]] = 1
    elif kind == "click":
        counts[SLOT["clicks"]] = 1
    elif kind == "dwell" and record.get("dwell_ms") is not None:
        counts[SLOT["dwells"]] = 1
        counts[SLOT["dwell_ms"]] = int(record["dwell_ms"])
    elif kind == "scroll" and record.get("scroll_depth") is not None:
        counts[SLOT["scrolls"]] = 1
        counts[SLOT["scroll_micros"]] = round(float(record["scroll_depth"]) * 1_000_000)
    elif kind == "rating" and record.get("rating") is not None:
        counts[SLOT["ratings"]] = 1
        counts[SLOT["rating_sum"]] = int(record["rating"])
    elif kind == "thumbs" and record.get("thumb") in ("up", "down"):
        counts[SLOT["thumbs_up" if record["thumb"] == "up" else "thumbs_down"]] = 1
    else:
        return None
    return tuple(counts)


class WindowedCounters:
    """Counters per key (any hashable) in time buckets, with a running sum per window."""

    def __init__(self, window_seconds: tuple[int, ...], bucket_seconds: int) -> None:
        if any(w % bucket_seconds for w in window_seconds):
            raise ValueError("every window must be a whole number of buckets")
        self.bucket_us = bucket_seconds * 1_000_000
        self.window_buckets = tuple(w // bucket_seconds for w in window_seconds)
        self._longest = max(self.window_buckets)
        # A bucket is dropped when it leaves the last of the longest windows (expiries at one time pop
        # in window order).
        self._drop_window = max(w for w, n in enumerate(self.window_buckets) if n == self._longest)
        self._buckets: dict[Hashable, dict[int, list[int]]] = {}
        self._sums: dict[Hashable, list[list[int]]] = {}
        self._expiries: list[tuple[int, int, int, Hashable]] = []  # (time, window, bucket, key)
        self.now_us = -(2**62)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._buckets

    def keys(self) -> list[Hashable]:
        return list(self._buckets)

    def bucket_of(self, ts_us: int) -> int:
        return ts_us // self.bucket_us

    def counts_in_window(self, ts_us: int) -> bool:
        """Whether an event at ts_us still counts in the longest window at the current time."""
        return (self.bucket_of(ts_us) + self._longest) * self.bucket_us > self.now_us

    def add(self, key: Hashable, ts_us: int, counts: tuple[int, ...]) -> bool:
        """Add an event's counts at the current time; False if it is too old for every window."""
        bucket = self.bucket_of(ts_us)
        live = [w for w, n in enumerate(self.window_buckets) if (bucket + n) * self.bucket_us > self.now_us]
        if not live:
            return False
        buckets = self._buckets.setdefault(key, {})
        sums = self._sums.setdefault(key, [list(_ZERO) for _ in self.window_buckets])
        cell = buckets.get(bucket)
        if cell is None:
            cell = buckets[bucket] = list(_ZERO)
            for w in live:
                heapq.heappush(self._expiries, ((bucket + self.window_buckets[w]) * self.bucket_us, w, bucket, key))
        for slot, value in enumerate(counts):
            if value:
                cell[slot] += value
                for w in live:
                    sums[w][slot] += value
        return True

    def advance(self, now_us: int) -> Iterator[tuple[int, set[Hashable]]]:
        """Move the clock to now_us, yielding (time, keys whose windows changed then) in time order.

        Each yield happens after that time's buckets have left their windows, so the caller can read the
        sums as of that time. Consume the iterator fully; the clock never moves back.
        """
        while self._expiries and self._expiries[0][0] <= now_us:
            at = self._expiries[0][0]
            self.now_us = max(self.now_us, at)
            changed: set[Hashable] = set()
            while self._expiries and self._expiries[0][0] == at:
                _, window, bucket, key = heapq.heappop(self._expiries)
                self._expire(key, window, bucket)
                changed.add(key)
            yield at, changed
        self.now_us = max(self.now_us, now_us)

    def _expire(self, key: Hashable, window: int, bucket: int) -> None:
        buckets = self._buckets[key]
        cell = buckets[bucket]
        sums = self._sums[key][window]
        for slot, value in enumerate(cell):
            sums[slot] -= value
        if window == self._drop_window:
            del buckets[bucket]
            if not buckets:
                del self._buckets[key]
                del self._sums[key]

    def sums(self, key: Hashable) -> list[list[int]] | tuple[tuple[int, ...], ...]:
        """Counter sums per window (in the order of the windows) for a key; zeros for an unknown key."""
        sums = self._sums.get(key)
        if sums is None:
            return tuple(_ZERO for _ in self.window_buckets)
        return sums

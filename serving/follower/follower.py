"""The feature updater (`kfloop features follow`): event log -> windowed aggregates -> online store.

It tails every writer's write-ahead segments, counts each new event once (by event_id) into time
buckets, and writes the changed users' and user x item pairs' aggregates to the online store, off the
collector's acknowledgement path. Buckets leaving windows change values too, so those keys are written
as the clock passes, even when their user sends nothing.

On start it rebuilds its counters from the log itself (sealed events of the longest window plus
`restart_lookback_s`, and every write-ahead segment), so it needs no checkpoint of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kfloop.eventlog import sealed_files
from kfloop.eventlog.tail import WalTailer
from kfloop.features import names
from kfloop.features.aggregates import Aggregator, Key, keys_of, views_of
from kfloop.features.config import FeaturesConfig
from kfloop.features.offline import sealed_events
from kfloop.features.online_write import OnlineWriter
from serving.follower import metrics

log = logging.getLogger(__name__)

Clock = Callable[[], int]
EXPLICIT_TYPES = frozenset({"rating", "thumbs"})


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def as_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


class FeatureFollower:
    """Keeps the online aggregates of one partition of users up to date with the event log."""

    def __init__(self, config: FeaturesConfig, feature_store: Any, *, clock: Clock = wall_clock_us) -> None:
        self.config = config
        self.clock = clock
        follower = config.follower
        self.aggregator = Aggregator(config.aggregation, partition=(follower.partition_index, follower.partition_count))
        self.tailer = WalTailer(config.event_log, sealed_scan_interval_s=follower.sealed_scan_interval_s)
        self.writer = OnlineWriter(feature_store)
        self.started = False
        self._backlog: set[Key] = set()
        self._explicit_online: set[tuple[str, Key]] = set()  # explicit rows this process left non-empty
        math = self.aggregator.math
        self._empty = {
            names.USER_EXPLICIT: math.empty_explicit(names.USER_PREFIX),
            names.USER_ITEM_EXPLICIT: math.empty_explicit(names.USER_ITEM_PREFIX),
        }

    def start(self, *, write_all: bool = True) -> int:
        """Rebuild the counters from the log. Every key they touch is written: here (write_all), or a
        batch per step, so that following new events does not wait for it. Returns rows written."""
        began = time.perf_counter()
        now = self.clock()
        wal_records = self.tailer.poll()  # before the sealed files: a segment sealed meanwhile is in both
        listed = sealed_files(self.config.event_log.log_uri)
        longest = max(w.seconds for w in self.config.aggregation.windows)
        lookback_s = longest + self.config.follower.restart_lookback_s + self.config.aggregation.bucket_s
        sealed = sealed_events(self.config.event_log.log_uri, since_us=now - lookback_s * 1_000_000)
        self.tailer.mark_sealed_read(listed)
        self.aggregator.advance_all(now)
        records = sealed + wal_records
        self._backlog = self.aggregator.ingest(records, touch_expired=True)
        # Keys with explicit feedback in the replayed range may hold non-empty explicit rows online (a
        # previous process wrote them): write their explicit views even if empty now.
        for record in records:
            if record["type"] in EXPLICIT_TYPES:
                for key in keys_of(record):
                    self._explicit_online.add((views_of(key)[1], key))
        log.info(
            "feature updater: state rebuilt from %d sealed + %d write-ahead events in %.2f s; %d keys to write",
            len(sealed),
            len(wal_records),
            time.perf_counter() - began,
            len(self._backlog),
        )
        self.started = True
        return self._write_backlog(None if write_all else self.config.follower.startup_write_batch)

    def step(self) -> tuple[int, int]:
        """One poll: (events read, rows written)."""
        records = self.tailer.poll()
        changed = self.aggregator.advance_all(self.clock())
        changed |= self.aggregator.ingest(records)
        self._backlog -= changed
        written = self._write(changed) + self._write_backlog(self.config.follower.startup_write_batch)
        if records:
            metrics.EVENTS_READ.inc(len(records))
            written_at = wall_clock_us()
            for record in records:
                metrics.VISIBLE_AFTER.observe(max(0, written_at - record["received_at"]) / 1e6)
        return len(records), written

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set; sleeps `poll_interval_s` only when a poll found nothing new."""
        if not self.started:
            self.start(write_all=False)
        while not stop.is_set():
            read, _ = self.step()
            if not read and not self._backlog:
                stop.wait(self.config.follower.poll_interval_s)

    def close(self) -> None:
        self.tailer.close()

    @property
    def backlog(self) -> int:
        """Keys rebuilt on start and not written yet."""
        return len(self._backlog)

    def _write_backlog(self, limit: int | None) -> int:
        if not self._backlog:
            return 0
        if limit is None or limit >= len(self._backlog):
            keys, self._backlog = self._backlog, set()
        else:
            keys = {self._backlog.pop() for _ in range(limit)}
        return self._write(keys)

    def _write(self, keys: set[Key]) -> int:
        """Write keys' values as of now. An explicit view that was empty and still is, is not written:
        most keys never get explicit feedback, and a missing row reads as the same (empty) defaults."""
        if not keys:
            return 0
        began = time.perf_counter()
        at = as_datetime(self.aggregator.now_us)
        batch = []
        for key in keys:
            values = self.aggregator.values(key)
            explicit = views_of(key)[1]
            if values[explicit] == self._empty[explicit]:
                if (explicit, key) not in self._explicit_online:
                    del values[explicit]
                self._explicit_online.discard((explicit, key))
            else:
                self._explicit_online.add((explicit, key))
            batch.append((key, values))
        written = self.writer.write(batch, at)
        metrics.WRITE_SECONDS.observe(time.perf_counter() - began)
        metrics.ROWS_WRITTEN.inc(written)
        return written

"""The joiner's process side: the event log (sealed Parquet on start, then every writer's write-ahead segments)
fed, in arrival order, through the pure `Joiner`.

On start it replays `remember_s` of the log by arrival (sealed files of those dates, and every write-ahead
segment), so it needs no checkpoint of its own: a restarted joiner holds the same requests, waiting feedback and
counts as one that never stopped. Prometheus then sees a counter reset followed by that span's counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kfloop.eventlog import sealed_files
from kfloop.eventlog.store import resolve
from kfloop.eventlog.tail import WalTailer
from serving.joiner.config import JoinerConfig
from serving.joiner.join import Counts, Joiner, Row

log = logging.getLogger(__name__)

Clock = Callable[[], int]
JOIN_COLUMNS = [
    "event_id",
    "type",
    "request_id",
    "item_id",
    "ts",
    "received_at",
    "model_version",
    "variant",
    "dwell_ms",
    "source",
]
_TIME_COLUMNS = ("ts", "received_at")
_SLICE = 10_000


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def arrival(record: Row) -> tuple[int, str]:
    return record["received_at"], record["event_id"]


@dataclass(frozen=True)
class Snapshot:
    """The joiner's counts and state sizes at one moment (what /metrics shows)."""

    counts: Counts
    pending: int
    requests: int
    events_read: int
    replayed: int
    reference_ctr: dict[str, float] = field(default_factory=dict)
    """Each version's fixed reference CTR."""
    last_feedback_us: int | None = None
    """Arrival of the newest feedback, None before any."""
    started_us: int = 0
    """When this joiner started (its clock)."""


def arrival_dates(since_us: int, until_us: int) -> list[str]:
    """The arrival-date partitions (UTC) from since to until."""
    first = datetime.fromtimestamp(since_us / 1e6, tz=UTC).date()
    last = datetime.fromtimestamp(until_us / 1e6, tz=UTC).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def sealed_records(log_uri: str, paths: list[str], since_us: int) -> list[Row]:
    """The records of these sealed files that arrived since then (the joiner's columns only; timestamps as
    epoch microseconds)."""
    fs, _ = resolve(log_uri)
    since = datetime.fromtimestamp(since_us / 1e6, tz=UTC)
    records: list[Row] = []
    for path in paths:
        table = pq.read_table(path, filesystem=fs, columns=JOIN_COLUMNS, filters=[("received_at", ">=", since)])
        for column in _TIME_COLUMNS:
            index = table.column_names.index(column)
            table = table.set_column(index, column, table.column(column).cast(pa.int64()))
        records.extend(table.to_pylist())
    return records


class LogJoiner:
    """Follows the event log into a `Joiner`. `open` rebuilds the state and starts following in a thread;
    `snapshot` may be called from any thread."""

    def __init__(self, config: JoinerConfig, *, clock: Clock = wall_clock_us) -> None:
        self.config = config
        self.clock = clock
        self.joiner = Joiner(
            window_us=int(config.window_s * 1e6),
            remember_us=int(config.remember_s * 1e6),
            reference_size=config.reference_impressions,
            reference_settle_us=int(config.reference_settle_s * 1e6),
        )
        self.started_us = clock()
        self.tailer = WalTailer(config.event_log, sealed_scan_interval_s=config.sealed_scan_interval_s)
        self.ready = False
        self.failure: str | None = None
        """Why following stopped, if it did (the process is then unhealthy: a supervisor restarts it)."""
        self.events_read = 0
        self.replayed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Rebuild the state from the last `remember_s` of the log; returns the records replayed."""
        began = time.perf_counter()
        now = self.clock()
        since = now - int(self.config.remember_s * 1e6)
        log_uri = self.config.event_log.log_uri
        paths = sealed_files(log_uri, dates=arrival_dates(since, now))
        self.tailer.mark_sealed_read(paths)  # read below, not again by the tailer
        # After the listing: a segment sealed since is read through its lines (or its Parquet, if never seen).
        wal = [r for r in self.tailer.poll() if r["received_at"] >= since]
        sealed = sealed_records(log_uri, paths, since)
        # A segment sealed while it was listed can be read both ways: that is one copy of its records, not a
        # duplicate (another writer's copy has its own arrival time).
        copies = {(r["event_id"], r["received_at"]): r for r in sealed + wal}
        records = sorted(copies.values(), key=arrival)
        self._ingest(records, now)
        self.replayed = len(records)
        log.info(
            "joiner: state rebuilt from %d sealed + %d write-ahead records in %.2f s; %d requests, %d waiting",
            len(sealed),
            len(wal),
            time.perf_counter() - began,
            self.joiner.requests,
            self.joiner.pending,
        )
        return len(records)

    def step(self) -> int:
        """One poll of the log; returns the records read."""
        records = sorted(self.tailer.poll(), key=arrival)
        self._ingest(records, self.clock())
        self.events_read += len(records)
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set; sleeps `poll_interval_s` only when a poll found nothing new."""
        while not stop.is_set():
            if not self.step():
                stop.wait(self.config.poll_interval_s)

    def snapshot(self) -> Snapshot:
        with self._lock:
            joiner = self.joiner
            return Snapshot(
                joiner.counts.copy(),
                joiner.pending,
                joiner.requests,
                self.events_read,
                self.replayed,
                reference_ctr=dict(joiner.references.ctr),
                last_feedback_us=joiner.last_feedback_us,
                started_us=self.started_us,
            )

    def _ingest(self, records: list[Row], now_us: int) -> None:
        # In slices, so that a scrape during a long replay waits for one slice, not for the whole log.
        for begin in range(0, len(records), _SLICE):
            with self._lock:
                for record in records[begin : begin + _SLICE]:
                    self.joiner.ingest(record)
        with self._lock:
            self.joiner.advance(now_us)

    # -- as the service's durable resource (serving.common.lifecycle) ------------------------------------
    def open(self) -> Any:
        self.start()
        self._thread = threading.Thread(target=self._follow, name="joiner-follow", daemon=True)
        self._thread.start()
        self.ready = True
        return self

    def _follow(self) -> None:
        try:
            self.run(self._stop)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("joiner: following the event log failed; the counts stop here")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.tailer.close()
        self.ready = False

"""The durable event log writer: group-committed write-ahead segments, sealed into Parquet in the background."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from kfloop.errors import NotReady
from kfloop.eventlog import metrics
from kfloop.eventlog.config import EventLogConfig
from kfloop.eventlog.copies import duplicate_on_arrival, is_served
from kfloop.eventlog.store import payloads_table, read_events, write_sealed
from kfloop.eventlog.wal import Segment, encode_line, intact_payloads, segments_in

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, DROPPED_CONSENT = "accepted", "duplicate", "dropped_consent"


class _RecentIds:
    """A bounded set of event ids: the oldest are forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids.add(event_id)
        self._order.append(event_id)
        while len(self._order) > self._capacity:
            self._ids.discard(self._order.popleft())

    def discard(self, event_id: str) -> None:
        self._ids.discard(event_id)  # its place in _order ages out harmlessly


class _Pending:
    __slots__ = ("future", "lines", "new_ids", "statuses")

    def __init__(self, lines: list[bytes], statuses: list[str], new_ids: list[str]) -> None:
        self.lines, self.statuses, self.new_ids = lines, statuses, new_ids
        self.future: Future[list[str]] = Future()


class EventLog:
    """Append-only event log of one writer (one collector replica, or one importer).

    `append` returns only once its events are fsynced to a write-ahead segment; concurrent callers share
    one fsync (group commit). Segments are sealed into Parquet by size or age, and on `close`; `open`
    seals whatever a crash left behind, so everything acknowledged reaches Parquet.
    """

    def __init__(self, config: EventLogConfig, *, writer_id: str) -> None:
        self.config = config
        self.writer_id = writer_id
        self._dir = config.wal_dir / writer_id
        self._recent = _RecentIds(config.dedup_capacity)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._inflight: set[str] = set()  # accepted, not yet durable
        self.failure: OSError | None = None
        self._to_seal: queue.Queue[Segment | None] = queue.Queue()
        self._segment: Segment | None = None
        self._segment_counter = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        self.ready = False

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> EventLog:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._seed_recent_ids()
        self._threads = [
            threading.Thread(target=self._write_loop, name=f"eventlog-writer-{self.writer_id}", daemon=True),
            threading.Thread(target=self._seal_loop, name=f"eventlog-sealer-{self.writer_id}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.ready = True
        return self

    def close(self) -> None:
        """Finish pending writes, seal the open segment, stop the threads."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._wakeup.notify_all()
        for thread in self._threads:
            thread.join()
        self.ready = False

    def __enter__(self) -> EventLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending -------------------------------------------------------------------------------
    def submit(self, records: Iterable[dict[str, Any]]) -> Future[list[str]]:
        """Queue records; the future resolves to one status per record once they are durable.

        A duplicate of an event still on its way to disk resolves only after that event's commit, so a
        "duplicate" answer never stands for an event that is then lost.
        """
        statuses, lines, new_ids = [], [], []
        waits_for_inflight = False
        with self._lock:
            self._require_open()
            for record in records:
                status = self._admit(record)
                statuses.append(status)
                if status == ACCEPTED:
                    lines.append(encode_line(record))
                    new_ids.append(record["event_id"])
                elif status == DUPLICATE and record["event_id"] in self._inflight:
                    waits_for_inflight = True
            self._count(statuses)
            pending = _Pending(lines, statuses, new_ids)
            if lines or waits_for_inflight:
                self._inflight.update(new_ids)
                self._pending.append(pending)
                self._wakeup.notify()
        if not (lines or waits_for_inflight):
            pending.future.set_result(statuses)
        return pending.future

    def _require_open(self) -> None:
        if self.failure is not None:
            raise NotReady(f"the event log stopped after a failed durable write: {self.failure}")
        if self._closing or not self.ready:
            raise NotReady("the event log is not open (starting or shutting down)")

    def append(self, records: Iterable[dict[str, Any]]) -> list[str]:
        """Append and wait until durable: one status per record."""
        return self.submit(records).result()

    def _admit(self, record: dict[str, Any]) -> str:
        if not record["consent_personalization"]:
            return DROPPED_CONSENT
        event_id, served = record["event_id"], is_served(record["source"])
        if duplicate_on_arrival(served, event_id in self._recent, _served_key(event_id) in self._recent):
            return DUPLICATE
        self._remember(event_id, served)
        return ACCEPTED

    def _remember(self, event_id: str, served: bool) -> None:
        self._recent.add(event_id)
        if served:  # a client's copy arriving later is a duplicate; a served one was stored after a client's
            self._recent.add(_served_key(event_id))

    @staticmethod
    def _count(statuses: list[str]) -> None:
        for status in (ACCEPTED, DUPLICATE, DROPPED_CONSENT):
            n = statuses.count(status)
            if n:
                metrics.EVENTS.labels(status).inc(n)

    # -- writer thread: group commit -------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing and not self._segment_expired():
                    self._wakeup.wait(timeout=self._seconds_to_expiry())
                batch, self._pending = self._pending, []
                closing = self._closing
            if batch and self.failure is None:
                self._commit(batch)
            if closing or self._segment_expired() or self._segment_full():
                self._rotate()
            if closing and not batch:
                with self._lock:
                    if not self._pending:
                        break
        self._to_seal.put(None)

    def _commit(self, batch: list[_Pending]) -> None:
        lines = [line for pending in batch for line in pending.lines]
        started = time.perf_counter()
        try:
            if lines:
                if self._segment is None:
                    self._segment = self._new_segment()
                self._segment.append(lines)
        except OSError as exc:
            # After a failed fsync the file's state is unknown (the kernel may have dropped the pages), so
            # nothing more is acknowledged: the process must restart and recover from what is on disk.
            log.critical("durable write failed; %d events not acknowledged; the log stops: %s", len(lines), exc)
            with self._lock:
                self.failure = exc
                self.ready = False
                failed = batch + self._pending
                self._pending = []
            for pending in failed:
                pending.future.set_exception(exc)
            return
        metrics.DURABLE_WRITE_SECONDS.observe(time.perf_counter() - started)
        metrics.GROUP_COMMIT_EVENTS.observe(len(lines))
        with self._lock:
            for pending in batch:
                self._inflight.difference_update(pending.new_ids)
        for pending in batch:
            pending.future.set_result(pending.statuses)

    def _new_segment(self) -> Segment:
        self._segment_counter += 1
        stamp = int(time.time() * 1000)
        return Segment(self._dir, f"seg-{stamp:013d}-{self._segment_counter:06d}")

    def _segment_full(self) -> bool:
        return self._segment is not None and self._segment.events >= self.config.segment_max_events

    def _segment_expired(self) -> bool:
        return self._segment is not None and self._seconds_to_expiry() <= 0

    def _seconds_to_expiry(self) -> float | None:
        if self._segment is None:
            return None
        age = datetime.now(UTC) - self._segment.opened_at
        return (timedelta(seconds=self.config.segment_max_age_s) - age).total_seconds()

    def _rotate(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._to_seal.put(self._segment)
            self._segment = None

    # -- sealer thread ---------------------------------------------------------------------------
    def _seal_loop(self) -> None:
        while (segment := self._to_seal.get()) is not None:
            try:
                self._seal(segment.path)
            except Exception:  # the segment stays on disk; the next open() seals it
                log.exception("sealing %s failed; it will be sealed on the next start", segment.path)

    def _seal(self, path: Any) -> int:
        payloads, bad = intact_payloads(path)
        if bad:
            metrics.CORRUPT_LINES.inc(bad)
            log.warning("%s: skipped %d torn or corrupt line(s)", path, bad)
        table = payloads_table(payloads)
        if table.num_rows:
            write_sealed(self.config.log_uri, f"{self.writer_id}-{path.stem}", table)
        path.unlink()
        metrics.SEALED_SEGMENTS.inc()
        return table.num_rows

    # -- recovery --------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Seal every segment a previous process of this writer left (crash, or a failed seal)."""
        for path in segments_in(self._dir):
            count = self._seal(path)
            log.info("recovered %d event(s) from %s", count, path.name)

    def _seed_recent_ids(self) -> None:
        days = self.config.dedup_lookback_days
        if days == 0:
            return
        today = datetime.now(UTC).date()
        dates = [(today - timedelta(days=n)).isoformat() for n in range(days + 1)]
        table = read_events(self.config.log_uri, columns=["event_id", "source"], dates=dates, deduplicate=False)
        ids, sources = table.column("event_id").to_pylist(), table.column("source").to_pylist()
        for event_id, source in zip(ids, sources, strict=True):
            self._remember(event_id, is_served(source))


def _served_key(event_id: str) -> str:
    """The duplicate filter's entry for a served copy of an event id (not itself an event id: it has a space)."""
    return f"served {event_id}"

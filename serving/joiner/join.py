"""Join feedback to served impressions by `request_id`: pure logic, no I/O and no clock of its own.

Records come in the write-ahead form (timestamps as epoch microseconds), in arrival order. The rules:

- Each `event_id` counts once; later copies (another collector replica's) count as duplicates, except the served
  copy of an impression a client sent first (`kfloop.eventlog.copies`: the served record wins): it takes over
  the slot's labels, and the impression's count moves to them if the client named others.
- A request's decision time is the `ts` of its earliest impression. Feedback naming the request is attributed
  when its own `ts` is at most `window` after the decision (earlier is accepted: client clocks differ), late
  (counted, dropped) when later. It takes the (model_version, variant) of the impression of its item in that
  request, else of the request's first impression.
- Feedback naming a request with no impression yet waits, up to `window` after its arrival, for the impressions
  (the predictor ships them from its spool, with retries, and a click can overtake them): joined if they come,
  else counted unattributed and dropped. Feedback without a request id is unattributed at once.
- A request is remembered `remember` after its first impression arrived (and every event id as long after
  its arrival, for duplicates); feedback naming a forgotten request is unattributed.
- Impressions without a model_version or variant count under "unknown"; so does unattributed feedback that
  does not name its own.
- Each version's reference CTR is measured over its first impressions as stable (serving.joiner.reference);
  the newest feedback's arrival (copies included: an arrival all the same) is kept for the freshness alert.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from kfloop.eventlog.copies import supersedes
from serving.joiner.reference import ReferenceWindows

UNKNOWN = "unknown"
NO_REQUEST_ID = "no_request_id"
UNKNOWN_REQUEST = "unknown_request"
FIRST = object()
"""In a request's reference set: its first impression is in the reference window (for feedback on an item the
request did not show, which takes that impression's labels)."""

Row = dict[str, Any]
Labels = tuple[str, str]  # (model_version, variant)


def labels_of(record: Row) -> Labels:
    return (record.get("model_version") or UNKNOWN, record.get("variant") or UNKNOWN)


@dataclass
class Counts:
    """Everything the joiner has counted; keys start with (model_version, variant)."""

    impressions: Counter[Labels] = field(default_factory=Counter)
    attributed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Attributed feedback by (model_version, variant, type)."""
    dwell_ms: Counter[Labels] = field(default_factory=Counter)
    """Milliseconds of attributed dwell."""
    late: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Feedback after its request's window, by (model_version, variant, type)."""
    unattributed: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    """Feedback with no impression to join, by (model_version, variant, type, reason); the labels are the
    feedback's own, if it names them."""
    duplicates: Counter[str] = field(default_factory=Counter)
    """Copies of an event already counted, by type."""

    def copy(self) -> Counts:
        return Counts(**{f.name: Counter(getattr(self, f.name)) for f in fields(self)})


@dataclass
class _Request:
    decision_us: int
    labels: Labels
    items: dict[str, Labels]
    reference: set[Any] = field(default_factory=set)
    """Items (and FIRST) whose impression is in its version's reference window."""


V = TypeVar("V")


class _Aging(Generic[V]):
    """Keys with the time they arrived; `forget` drops those that arrived before a cutoff, oldest first."""

    def __init__(self) -> None:
        self.values: dict[str, V] = {}
        self._order: deque[tuple[int, str]] = deque()

    def add(self, key: str, value: V, at_us: int) -> None:
        self.values[key] = value
        self._order.append((at_us, key))

    def forget(self, cutoff_us: int) -> None:
        while self._order and self._order[0][0] < cutoff_us:
            self.values.pop(self._order.popleft()[1], None)


class Joiner:
    """Joins feedback to impressions as records arrive; `advance` moves its clock (expiring what waited)."""

    def __init__(
        self, *, window_us: int, remember_us: int, reference_size: int = 2000, reference_settle_us: int = 60_000_000
    ) -> None:
        if remember_us < window_us:
            raise ValueError("remember_us must be at least window_us")
        self.window_us = window_us
        self.remember_us = remember_us
        self.counts = Counts()
        self.references = ReferenceWindows(size=reference_size, settle_us=reference_settle_us)
        self.last_feedback_us: int | None = None
        """Arrival of the newest feedback record (any type but impression)."""
        self.now_us = 0
        self._seen: _Aging[tuple[Any, Labels]] = _Aging()
        """Each event id's kept copy: its source and labels."""
        self._requests: _Aging[_Request] = _Aging()
        self._pending: dict[str, list[Row]] = {}
        self._pending_order: deque[tuple[int, str]] = deque()

    @property
    def pending(self) -> int:
        """Feedback waiting for its request's impressions."""
        return sum(len(waiting) for waiting in self._pending.values())

    @property
    def requests(self) -> int:
        """Requests remembered."""
        return len(self._requests.values)

    def ingest(self, record: Row) -> None:
        """One event-log record; the clock first moves to its arrival."""
        self.advance(record["received_at"])
        if record["type"] != "impression":
            self.last_feedback_us = max(self.last_feedback_us or 0, record["received_at"])
        event_id = record["event_id"]
        kept = self._seen.values.get(event_id)
        if kept is not None:
            if record["type"] == "impression" and supersedes(record.get("source"), kept[0]):
                self._seen.values[event_id] = (record.get("source"), labels_of(record))
                self._served_copy(record, kept[1])
            else:
                self.counts.duplicates[record["type"]] += 1
            return
        self._seen.add(event_id, (record.get("source"), labels_of(record)), record["received_at"])
        if record["type"] == "impression":
            self._impression(record)
        else:
            self._feedback(record)

    def advance(self, now_us: int) -> None:
        """Move the clock (never back): waiting feedback older than the window becomes unattributed, and
        requests and event ids older than `remember` are forgotten."""
        if now_us <= self.now_us:
            return
        self.now_us = now_us
        for record in self._expired_pending(now_us - self.window_us):
            self._unattributed(record, UNKNOWN_REQUEST)
        self._requests.forget(now_us - self.remember_us)
        self._seen.forget(now_us - self.remember_us)
        self.references.advance(now_us)

    def _impression(self, record: Row) -> None:
        self.counts.impressions[labels_of(record)] += 1
        self._shown(record)

    def _served_copy(self, record: Row, client_labels: Labels) -> None:
        """The served copy of an impression a client sent first: its labels are the slot's from now on, and its
        count moves to them (when the client named others)."""
        labels = labels_of(record)
        if labels != client_labels:
            self.counts.impressions[client_labels] -= 1
            self.counts.impressions[labels] += 1
        self._shown(record, served=True)

    def _shown(self, record: Row, *, served: bool = False) -> None:
        """Remember the slot under its request, and join the feedback that waited for it."""
        labels, request_id = labels_of(record), record["request_id"]
        if request_id is None:
            return
        request = self._requests.values.get(request_id)
        first = request is None
        if request is None:
            request = _Request(record["ts"], labels, {})
            self._requests.add(request_id, request, record["received_at"])
        else:
            request.decision_us = min(request.decision_us, record["ts"])
            if served:  # a decision's impressions all have its labels
                request.labels = labels
        item = record.get("item_id")
        if item is not None:
            before = request.items.get(item)
            if served or before is None:
                request.items[item] = labels
            # a slot enters its version's reference window once, by its first copy that names a version
            named_now = labels[0] != UNKNOWN and (before is None or before[0] == UNKNOWN)
            if named_now and self.references.admit(*labels, record["received_at"]):
                request.reference.add(item)
                if first:
                    request.reference.add(FIRST)
        for waiting in self._pending.pop(request_id, []):
            self._join(waiting, request)

    def _feedback(self, record: Row) -> None:
        request_id = record["request_id"]
        if request_id is None:
            self._unattributed(record, NO_REQUEST_ID)
            return
        request = self._requests.values.get(request_id)
        if request is None:
            self._pending.setdefault(request_id, []).append(record)
            self._pending_order.append((record["received_at"], request_id))
        else:
            self._join(record, request)

    def _join(self, record: Row, request: _Request) -> None:
        labels = request.items.get(record.get("item_id"), request.labels)
        key = (*labels, record["type"])
        if record["ts"] > request.decision_us + self.window_us:
            self.counts.late[key] += 1
            return
        self.counts.attributed[key] += 1
        item = record.get("item_id")
        if record["type"] == "click" and (item if item in request.items else FIRST) in request.reference:
            self.references.click(labels[0])
        if record["type"] == "dwell":
            self.counts.dwell_ms[labels] += record.get("dwell_ms") or 0

    def _unattributed(self, record: Row, reason: str) -> None:
        self.counts.unattributed[(*labels_of(record), record["type"], reason)] += 1

    def _expired_pending(self, cutoff_us: int) -> Iterator[Row]:
        while self._pending_order and self._pending_order[0][0] < cutoff_us:
            _, request_id = self._pending_order.popleft()
            waiting = self._pending.get(request_id)
            if not waiting:
                continue  # joined meanwhile, or already expired with an earlier entry
            expired = [r for r in waiting if r["received_at"] < cutoff_us]
            kept = [r for r in waiting if r["received_at"] >= cutoff_us]
            if kept:
                self._pending[request_id] = kept
            else:
                del self._pending[request_id]
            yield from expired

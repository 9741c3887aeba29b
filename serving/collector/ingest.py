"""From raw event objects to durable log records, one result per event: a bad event never sinks a batch."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kfloop.errors import NotReady, field_errors
from kfloop.eventlog import EventLog
from kfloop.events import EVENT_TAGS, parse_event
from kfloop.events.record import to_record
from serving.collector.metrics import CollectorMetrics

REJECTED = "rejected"


@dataclass(slots=True)
class Outcome:
    """What happened to one event of a request."""

    index: int
    event_id: str | None
    status: str = REJECTED
    errors: list[dict[str, str]] | None = None
    reason: str | None = None  # the kind of the first error, a bounded metric label
    record: dict[str, Any] | None = field(default=None, repr=False)

    def as_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"index": self.index, "event_id": self.event_id, "status": self.status}
        if self.errors:
            result["errors"] = self.errors
        return result


def reject(outcome: Outcome, reason: str, errors: list[dict[str, str]]) -> Outcome:
    outcome.status, outcome.reason, outcome.errors = REJECTED, reason, errors
    return outcome


class EventValidator:
    """Validates one event object against schema v1 and the collector's own checks (clock skew)."""

    def __init__(self, max_future_skew_s: float) -> None:
        self._max_skew = timedelta(seconds=max_future_skew_s)

    def check(self, index: int, data: Any, *, received_at: datetime, source: str) -> Outcome:
        event_id = data.get("event_id") if isinstance(data, dict) else None
        outcome = Outcome(index, event_id if isinstance(event_id, str) else None)
        if not isinstance(data, dict):
            return reject(outcome, "not_an_object", [{"field": "(event)", "reason": "must be a JSON object"}])
        try:
            event = parse_event(data)
        except ValidationError as exc:
            return reject(outcome, exc.errors()[0]["type"], field_errors(exc, union_tags=EVENT_TAGS))
        if event.ts > received_at + self._max_skew:
            limit = self._max_skew.total_seconds()
            return reject(outcome, "future_ts", [{"field": "ts", "reason": f"is more than {limit:g}s in the future"}])
        outcome.record = to_record(event, received_at=received_at, source=source)
        outcome.status = "pending"
        return outcome


class DurableSink:
    """Hands validated records to the event log and waits, without blocking the loop, until they are fsynced."""

    def __init__(self, log: EventLog, metrics: CollectorMetrics) -> None:
        self._log = log
        self._metrics = metrics

    async def write(self, outcomes: list[Outcome], *, source: str) -> None:
        """Fill in each valid outcome's status once durable; count every outcome."""
        valid = [o for o in outcomes if o.record is not None]
        if valid:
            statuses = await self._append([o.record for o in valid])
            for outcome, status in zip(valid, statuses, strict=True):
                outcome.status = status
        self._count(outcomes, source)

    async def _append(self, records: list[Any]) -> list[str]:
        started = time.perf_counter()
        future = self._log.submit(records)  # NotReady (503) while the log is not open
        try:
            statuses = await asyncio.wrap_future(future)
        except OSError as exc:
            raise NotReady(f"the event log could not make events durable ({exc.strerror}); retry") from None
        self._metrics.durable_write.observe(time.perf_counter() - started)
        return statuses

    def _count(self, outcomes: list[Outcome], source: str) -> None:
        self._metrics.count_outcomes([o.status for o in outcomes], source)
        for outcome in outcomes:
            if outcome.status == REJECTED and outcome.reason:
                self._metrics.rejected.labels(outcome.reason, source).inc()


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    counts = {"accepted": 0, "duplicate": 0, "dropped_consent": 0, "rejected": 0}
    for outcome in outcomes:
        if outcome.status in counts:
            counts[outcome.status] += 1
    return counts

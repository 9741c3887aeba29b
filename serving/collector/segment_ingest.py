"""Segment requests end to end: authorize, translate each message, store the mapped ones, answer like Segment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from serving.collector.config import CollectorConfig
from serving.collector.ingest import DurableSink, EventValidator, Outcome, reject, summarize
from serving.collector.metrics import CollectorMetrics
from serving.collector.segment import MESSAGE_TYPES, SegmentTranslator, WriteKeys, envelope_of

SOURCE = "segment"
IGNORED = "ignored"


class SegmentIngest:
    def __init__(
        self, config: CollectorConfig, validator: EventValidator, sink: DurableSink, metrics: CollectorMetrics
    ) -> None:
        self._max_messages = config.max_batch_events
        self._keys = WriteKeys(config.segment.load_write_keys())
        self._translator = SegmentTranslator(config.segment, config.segment.load_pseudonymization_key())
        self._validator = validator
        self._sink = sink
        self._metrics = metrics

    async def ingest(self, payload: Any, message_type: str | None, authorization: str | None) -> dict[str, Any]:
        """Store the mapped messages of one request (durably) and say what became of each."""
        envelope = envelope_of(payload, message_type, max_messages=self._max_messages)
        self._keys.check(authorization, envelope.body_keys)
        received_at = datetime.now(UTC)
        handled = [self._outcome(i, m, received_at) for i, m in enumerate(envelope.messages)]
        await self._sink.write([o for o, _ in handled if o.status != IGNORED], source=SOURCE)
        outcomes = [o for o, _ in handled]
        results = [_result(outcome, kind) for outcome, kind in handled]
        return {"success": True, "results": results, **summarize(outcomes), IGNORED: _count(outcomes, IGNORED)}

    def _outcome(self, index: int, message: Any, received_at: datetime) -> tuple[Outcome, str | None]:
        kind = self._translator.message_type(message)
        if kind is None:
            self._metrics.segment_messages.labels("other", "false").inc()
            return _bad_type(index, message), None
        mapping = self._translator.mapping_for(message)
        self._metrics.segment_messages.labels(kind, "true" if mapping else "false").inc()
        if mapping is None:
            message_id = message.get("messageId")
            return Outcome(index, message_id if isinstance(message_id, str) else None, IGNORED), kind
        translation = self._translator.translate(message, mapping, received_at)
        outcome = self._validator.check(index, translation.event, received_at=received_at, source=SOURCE)
        for error in outcome.errors or ():
            error["field"] = translation.segment_field(error["field"])
        return outcome, kind


def _bad_type(index: int, message: Any) -> Outcome:
    if not isinstance(message, dict):
        return reject(
            Outcome(index, None), "not_an_object", [{"field": "(message)", "reason": "must be a JSON object"}]
        )
    message_id = message.get("messageId")
    outcome = Outcome(index, message_id if isinstance(message_id, str) else None)
    return reject(
        outcome, "unknown_message_type", [{"field": "type", "reason": f"must be one of {', '.join(MESSAGE_TYPES)}"}]
    )


def _result(outcome: Outcome, kind: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "index": outcome.index,
        "messageId": outcome.event_id,
        "type": kind,
        "status": outcome.status,
    }
    if outcome.errors:
        result["errors"] = outcome.errors
    return result


def _count(outcomes: list[Outcome], status: str) -> int:
    return sum(1 for o in outcomes if o.status == status)

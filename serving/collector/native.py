"""The shapes POST /v1/events accepts: one event, an array of events, or {"events": [...]}."""

from __future__ import annotations

from typing import Any

from kfloop.errors import MalformedRequest, PayloadTooLarge

SHAPES = 'an event object, a JSON array of events, or {"events": [...]}'


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def events_in(payload: Any, *, max_events: int) -> list[Any]:
    """The events of a parsed body; 400 for another shape, 413 for too many."""
    if isinstance(payload, list):
        items = payload
    elif isinstance(payload, dict) and "events" in payload:
        unexpected = sorted(set(payload) - {"events"})
        if unexpected:
            shown = ", ".join(key[:40] for key in unexpected[:5])
            raise MalformedRequest(f'a batch object holds only "events"; unexpected key(s): {shown}')
        items = payload["events"]
        if not isinstance(items, list):
            raise MalformedRequest(f'"events" must be a JSON array, got {json_type(items)}')
    elif isinstance(payload, dict):
        items = [payload]
    else:
        raise MalformedRequest(f"the body must be {SHAPES}; got a JSON {json_type(payload)}")
    if not items:
        raise MalformedRequest("the body holds no events")
    if len(items) > max_events:
        raise PayloadTooLarge(
            f"{len(items)} events in one request; the limit is {max_events}",
            details=[{"field": "events", "reason": f"at most {max_events} events", "limit_events": max_events}],
        )
    return items

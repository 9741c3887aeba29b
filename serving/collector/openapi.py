"""OpenAPI descriptions of the bodies the collector parses itself (so FastAPI cannot infer them)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from kfloop.events import Event

REF = "#/components/schemas/{model}"
EVENT_SCHEMA_NAME = "FeedbackEvent"


class FieldError(BaseModel):
    field: str
    """The offending field (dotted path)."""
    reason: str
    """What is wrong with it."""


class EventResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    index: int
    """Position of the event in the request (0 for a single event)."""
    event_id: str | None
    """The event's id, when it had a readable one."""
    status: Literal["accepted", "duplicate", "dropped_consent", "rejected"]
    """accepted: durable; duplicate: stored before; dropped_consent: not stored (no consent); rejected: invalid."""
    errors: list[FieldError] | None = None
    """Why it was rejected."""


class IngestResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    results: list[EventResult]
    """One result per event, in request order."""
    accepted: int
    duplicate: int
    dropped_consent: int
    rejected: int


class ErrorResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    error: str
    """Error class, e.g. MalformedRequest, PayloadTooLarge, InvalidInput, Unauthorized, NotReady."""
    message: str
    """What went wrong, for a person."""
    details: list[dict[str, Any]] | None = None
    """Machine-readable specifics, a list of objects: field errors ({"field", "reason"}), per-event results,
    limits."""


class SegmentMessage(BaseModel):
    """A Segment message (track, identify, page, screen, group, alias); other Segment keys are allowed. A message
    is answered on its own (its result: rejected naming Segment's field, or ignored when it maps to no event),
    never by refusing the request it came in."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    type: Literal["track", "identify", "page", "screen", "group", "alias"] | None = None
    """Message type; implied by the endpoint except in a batch."""
    event: str | None = None
    """Track event name, looked up in the collector's mapping table."""
    name: str | None = None
    """Page or screen name, looked up in the page mapping table."""
    messageId: str | None = None
    """Becomes the kfloop event_id (idempotency key)."""
    userId: str | int | float | None = None
    """Pseudonymized (HMAC-SHA256) into user_id; never stored raw. A number (as some Segment sources send) is
    taken as its decimal text."""
    anonymousId: str | int | float | None = None
    """Used, pseudonymized, when there is no userId."""
    timestamp: str | None = None
    """When it happened (else originalTimestamp, else arrival time)."""
    originalTimestamp: str | None = None
    properties: dict[str, Any] | None = None
    """Mapped properties become event fields; the rest is dropped."""
    context: dict[str, Any] | None = None
    """context.consent.categoryPreferences decides consent."""
    writeKey: str | None = None
    """Write key, when not sent as basic auth (another type: 400, even with basic auth)."""


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    batch: list[SegmentMessage] = Field(min_length=1)
    """The messages (at least one: an empty batch is refused)."""
    context: dict[str, Any] | None = None
    """Context shared by every message (each message's own keys win)."""
    writeKey: str | None = None
    """Write key of the whole batch, when not sent as basic auth (another type: 400)."""
    sentAt: str | None = None


class SegmentResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    index: int
    messageId: str | None
    type: str | None
    """The message type."""
    status: Literal["accepted", "duplicate", "dropped_consent", "rejected", "ignored"]
    """ignored: a valid message with no mapping (identify, unmapped track or page): counted, not stored."""
    errors: list[FieldError] | None = None
    """Why it was rejected, naming Segment's fields."""


class SegmentResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    success: bool
    """True once the request was authorized and parsed, as Segment answers."""
    results: list[SegmentResult]
    accepted: int
    duplicate: int
    dropped_consent: int
    rejected: int
    ignored: int


def components() -> dict[str, Any]:
    """Schemas to add under components/schemas: the event union and the Segment request bodies."""
    out: dict[str, Any] = {}
    event = TypeAdapter(Event).json_schema(ref_template=REF, mode="validation")
    out.update(event.pop("$defs", {}))
    out[EVENT_SCHEMA_NAME] = event
    for model in (SegmentMessage, SegmentBatch):
        schema = model.model_json_schema(ref_template=REF)
        out.update({name: d for name, d in schema.pop("$defs", {}).items() if name not in out})  # keep ours
        out[model.__name__] = _answered_per_message(schema)
    return out


STRICT_SEGMENT_FIELDS = ("writeKey", "batch")
"""The only Segment fields whose type decides the request (400): the write key, and a batch's list itself."""


def _answered_per_message(schema: dict[str, Any]) -> dict[str, Any]:
    """A Segment field of another type than Segment's is answered in the message's result (rejected, naming
    the field, or ignored), never by refusing the request, as Segment does: the document states each field's
    type in words and takes any JSON value (writeKey and batch excepted)."""
    properties = schema["properties"]
    for name, field in properties.items():
        if name not in STRICT_SEGMENT_FIELDS:
            expected = json.dumps({k: v for k, v in field.items() if k not in ("title", "description", "default")})
            said = field.get("description", "")
            properties[name] = {"description": f"{said} Segment's type: {expected}; another is answered per message."}
    if "batch" in properties:
        properties["batch"]["items"] = {
            "description": "a Segment message (SegmentMessage); another value is answered in its result",
            "anyOf": [properties["batch"]["items"], {}],
        }
    return schema


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}, "text/plain": {"schema": schema}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


EVENTS_BODY = json_body(
    {
        "oneOf": [
            ref(EVENT_SCHEMA_NAME),
            {"type": "array", "items": ref(EVENT_SCHEMA_NAME), "minItems": 1},
            {
                "type": "object",
                "properties": {"events": {"type": "array", "items": ref(EVENT_SCHEMA_NAME), "minItems": 1}},
                "required": ["events"],
                "additionalProperties": False,
            },
        ]
    },
    'One event, an array of events, or {"events": [...]}; gzip (Content-Encoding) accepted.',
)
SEGMENT_MESSAGE_BODY = json_body(ref("SegmentMessage"), "One Segment message (any Content-Type).")
SEGMENT_BATCH_BODY = json_body(ref("SegmentBatch"), "A Segment batch (any Content-Type).")
SEGMENT_SECURITY = {"security": [{"segmentWriteKey": []}, {}]}
SECURITY_SCHEMES = {
    "segmentWriteKey": {
        "type": "http",
        "scheme": "basic",
        "description": "Segment write key as the username, empty password (or writeKey in the body).",
    },
    "servingToken": {
        "type": "http",
        "scheme": "bearer",
        "description": 'The serving token (serving_token_file): required for events with source "serving".',
    },
}
EVENTS_SECURITY = {"security": [{}, {"servingToken": []}]}
SERVING_ERRORS = {
    401: {"model": ErrorResponse, "description": 'Events with source "serving" without the serving token'},
    403: {"model": ErrorResponse, "description": 'Events with source "serving", and no serving token configured'},
}
ERRORS = {
    400: {"model": ErrorResponse, "description": "Not JSON, or not one of the accepted shapes"},
    413: {"model": ErrorResponse, "description": "Body or batch over the limit"},
    503: {"model": ErrorResponse, "description": "Event log not open yet, or not writable: retry"},
}

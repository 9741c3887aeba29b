"""Segment's HTTP Tracking API: write keys, message shapes, and track/page messages mapped to kfloop events.

Only mapped fields are copied out of a message, and the user is stored as an HMAC of Segment's id: raw ids,
emails, traits and free-text properties never reach the log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kfloop.errors import MalformedRequest, PayloadTooLarge, Unauthorized
from serving.collector.config import EventMapping, SegmentConfig
from serving.collector.fields import FIELDS_OF
from serving.collector.native import json_type

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
# Segment sources often send numeric ids (product_id: 42); kfloop ids are strings.
ID_FIELDS = frozenset({"item_id", "request_id", "question_id", "model_version", "variant", "policy"})
USER_ID_HEX_CHARS = 32  # 128 bits of the HMAC: ample against collisions, half the storage


class WriteKeys:
    """Checks a request's write key: HTTP basic auth username, else `writeKey` in the body."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def check(self, authorization: str | None, body_keys: list[Any]) -> None:
        candidates = [_basic_auth_user(authorization)] if authorization else body_keys
        if not self._keys:
            raise Unauthorized("no Segment write keys are configured on this collector")
        if not candidates:
            raise Unauthorized("missing write key: send it as the basic auth username or as writeKey")
        if not all(isinstance(c, str) and self._known(c) for c in candidates):
            raise Unauthorized("unknown write key")

    def _known(self, candidate: str) -> bool:
        given = candidate.encode()
        # compare against every key, so the time taken does not reveal which one nearly matched
        return sum(hmac.compare_digest(given, key) for key in self._keys) > 0


def _basic_auth_user(header: str) -> str:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("the Authorization header must use the Basic scheme (write key as username)")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the Authorization header is not valid Basic credentials") from None
    return decoded.partition(":")[0]


@dataclass(frozen=True, slots=True)
class Envelope:
    """The messages of one Segment request, and the write keys found in its body."""

    messages: list[Any]
    body_keys: list[Any]


def envelope_of(payload: Any, endpoint_type: str | None, *, max_messages: int) -> Envelope:
    """Messages of a `/v1/batch` body (endpoint_type None) or of a single-message endpoint."""
    if not isinstance(payload, dict):
        raise MalformedRequest(f"a Segment body must be a JSON object, got a JSON {json_type(payload)}")
    _require_string_key(payload, "writeKey")
    if endpoint_type is not None:
        message = {**payload, "type": endpoint_type}
        return Envelope([message], _present([payload.get("writeKey")]))
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise MalformedRequest(f'a Segment batch needs "batch": a JSON array, got {json_type(batch)}')
    if not batch:
        raise MalformedRequest("the batch holds no messages")
    if len(batch) > max_messages:
        raise PayloadTooLarge(
            f"{len(batch)} messages in one batch; the limit is {max_messages}",
            details=[{"field": "batch", "reason": f"at most {max_messages} messages", "limit_events": max_messages}],
        )
    for index, message in enumerate(batch):
        _require_string_key(message, f"batch[{index}].writeKey")
    shared = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    messages = [_with_context(m, shared) for m in batch]
    keys = _present([payload.get("writeKey")]) or _present([m.get("writeKey") for m in batch if isinstance(m, dict)])
    return Envelope(messages, keys)


def _require_string_key(body: Any, field: str) -> None:
    """A write key in a body is a string (or absent): another type is a malformed request, whatever the
    Authorization header says, as the document states."""
    key = body.get("writeKey") if isinstance(body, dict) else None
    if key is not None and not isinstance(key, str):
        reason = f"must be a string (the write key), got a JSON {json_type(key)}"
        raise MalformedRequest(f"{field} {reason}", details=[{"field": field, "reason": reason}])


def _present(values: list[Any]) -> list[Any]:
    """The distinct values given, in order, without the missing ones (values may be unhashable junk)."""
    distinct: list[Any] = []
    for value in values:
        if value is not None and value not in distinct:
            distinct.append(value)
    return distinct


def _with_context(message: Any, shared: dict[str, Any]) -> Any:
    """A batch's own `context` applies to each message; the message's keys win."""
    if not shared or not isinstance(message, dict):
        return message
    own = message.get("context")
    return {**message, "context": {**shared, **(own if isinstance(own, dict) else {})}}


@dataclass(slots=True)
class Translation:
    """A Segment message as a candidate kfloop event, and where each of its fields came from."""

    event: dict[str, Any]
    origins: dict[str, str]

    def segment_field(self, kfloop_field: str) -> str:
        head, dot, rest = kfloop_field.partition(".")
        origin = self.origins.get(head)
        if origin is None:
            return kfloop_field
        return origin if head == "consent" else origin + dot + rest


class SegmentTranslator:
    """Maps track (by event name) and page/screen (by name) messages to kfloop event objects."""

    def __init__(self, config: SegmentConfig, pseudonymization_key: bytes | None) -> None:
        self._config = config
        self._key = pseudonymization_key
        self._defaults = config.field_sources.model_dump()

    def message_type(self, message: Any) -> str | None:
        kind = message.get("type") if isinstance(message, dict) else None
        return kind if kind in MESSAGE_TYPES else None

    def mapping_for(self, message: dict[str, Any]) -> EventMapping | None:
        """The mapping of a track message (by event name) or page/screen message (by name), if any."""
        if message["type"] == "track":
            table, name = self._config.track, message.get("event")
        elif message["type"] in ("page", "screen"):
            table, name = self._config.pages, message.get("name")
        else:
            return None
        return table.get(name) if isinstance(name, str) else None

    def translate(self, message: dict[str, Any], mapping: EventMapping, received_at: datetime) -> Translation:
        message_id = message.get("messageId")
        origins: dict[str, str] = {"event_id": "messageId", "consent": "context.consent.categoryPreferences"}
        event: dict[str, Any] = {"type": mapping.type.value, "event_id": message_id}
        event["user_id"], origins["user_id"] = self._user_id(message)
        event["ts"], origins["ts"] = _timestamp(message, received_at)
        event["consent"] = self._consent(message)
        self._copy_properties(message, mapping, event, origins)
        return Translation(event, origins)

    def _user_id(self, message: dict[str, Any]) -> tuple[str | None, str]:
        for key, namespace in (("userId", b"user:"), ("anonymousId", b"anon:")):
            raw = message.get(key)
            if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) and str(raw):
                return self._pseudonymize(namespace + str(raw).encode()), key
        return None, "userId"

    def _pseudonymize(self, value: bytes) -> str:
        if self._key is None:
            raise Unauthorized("Segment is not configured on this collector (no pseudonymization key)")
        return hmac.new(self._key, value, hashlib.sha256).hexdigest()[:USER_ID_HEX_CHARS]

    def _consent(self, message: dict[str, Any]) -> dict[str, bool]:
        preferences = _dig(message, "context", "consent", "categoryPreferences")
        if not isinstance(preferences, dict):
            default = self._config.default_consent
            return {"personalization": default, "analytics": default}
        categories = self._config.consent_categories
        return {
            "personalization": any(preferences.get(c) is True for c in categories.personalization),
            "analytics": any(preferences.get(c) is True for c in categories.analytics),
        }

    def _copy_properties(
        self, message: dict[str, Any], mapping: EventMapping, event: dict[str, Any], origins: dict[str, str]
    ) -> None:
        properties = message.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        for kfloop_field in FIELDS_OF[mapping.type] & self._defaults.keys():
            if kfloop_field in mapping.constants:
                event[kfloop_field] = mapping.constants[kfloop_field]
                origins[kfloop_field] = f"(constant {kfloop_field} of the mapping)"
                continue
            sources = mapping.properties.get(kfloop_field, self._defaults[kfloop_field])
            found = next((key for key in sources if properties.get(key) is not None), None)
            if found is not None:
                event[kfloop_field] = _as_id(properties[found]) if kfloop_field in ID_FIELDS else properties[found]
            if sources:
                origins[kfloop_field] = f"properties.{found or sources[0]}"


def _as_id(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _timestamp(message: dict[str, Any], received_at: datetime) -> tuple[Any, str]:
    for key in ("timestamp", "originalTimestamp"):
        if message.get(key) is not None:
            return message[key], key
    return received_at.isoformat(), "timestamp"  # as Segment does: no timestamp means "when received"


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data

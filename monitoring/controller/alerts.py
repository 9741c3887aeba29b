"""Alertmanager's webhook payload (version 4), parsed strictly enough that a bad body does nothing.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config: one notification carries a group
of alerts, each with its labels, annotations, start time and fingerprint. Alertmanager resends a group every
`repeat_interval` while it fires, so the same alert arrives many times: its key (fingerprint and start time)
tells a repeat from a new firing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from kfloop.audit.canonical import rfc3339
from kfloop.audit.record import AlertEvidence
from kfloop.errors import MalformedRequest, field_errors

ACTION_LABEL = "action"
"""The label a rule sets to say what the controller does: rollback, retrain or none."""
VALUE_ANNOTATION = "value"
"""An annotation a rule may set to `{{ $value }}`: recorded as the alert's measured value."""
MAX_ALERTS = 1000

LabelSet = dict[str, str]


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 at +01:00: no UTC time exists
        raise ValueError("is outside the range of representable times") from None


AlertTime = Annotated[AwareDatetime, AfterValidator(_utc)]


class _Lenient(BaseModel):
    """Alertmanager may add keys in a later release: unknown keys are ignored, known ones checked."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class WebhookAlert(_Lenient):
    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: LabelSet = Field(default_factory=dict)
    startsAt: AlertTime
    endsAt: AlertTime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=256)

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: LabelSet) -> LabelSet:
        if not labels.get("alertname"):
            raise ValueError("an alert needs an alertname label")
        return labels

    @property
    def key(self) -> str:
        """What a repeat of this alert shares with it, and a new firing does not."""
        return alert_key(self.fingerprint, rfc3339(self.startsAt))

    @property
    def action(self) -> str:
        return self.labels.get(ACTION_LABEL, "none") or "none"

    def evidence(self) -> AlertEvidence:
        return AlertEvidence(
            alertname=self.labels["alertname"],
            fingerprint=self.fingerprint,
            starts_at=self.startsAt,
            status=self.status,
            labels=self.labels,
            annotations=self.annotations,
            value=_number(self.annotations.get(VALUE_ANNOTATION)),
        )


class Notification(_Lenient):
    """One webhook call."""

    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: LabelSet = Field(default_factory=dict)
    commonLabels: LabelSet = Field(default_factory=dict)
    commonAnnotations: LabelSet = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)


def alert_key(fingerprint: str, starts_at: str) -> str:
    return f"{fingerprint}@{starts_at}"


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _check_against_the_description(data: dict[str, Any]) -> None:
    """The body against NOTIFICATION_SCHEMA, the schema the OpenAPI document states, so what is refused and what
    is described agree (pydantic alone would take `true` for a count and a number for a timestamp)."""
    from jsonschema import Draft202012Validator

    errors = Draft202012Validator(NOTIFICATION_SCHEMA).iter_errors(data)
    errors = sorted(errors, key=lambda e: [str(part) for part in e.absolute_path])
    if errors:
        details = [{"field": _json_path(e.absolute_path), "reason": e.message[:200]} for e in errors[:10]]
        summary = "; ".join(f"{d['field']}: {d['reason']}" for d in details[:5])
        raise MalformedRequest(f"not an Alertmanager webhook (version 4) payload: {summary}", details=details)


def _json_path(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(body)"


def parse_notification(data: Any) -> Notification:
    """A webhook body (parsed JSON) as a Notification; MalformedRequest (400) naming each bad field."""
    if not isinstance(data, dict):
        raise MalformedRequest(f"the body is JSON {type(data).__name__}, not an Alertmanager webhook object")
    _check_against_the_description(data)
    try:
        return Notification.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        raise MalformedRequest(f"not an Alertmanager webhook (version 4) payload: {summary}", details=errors) from None


# What a webhook payload looks like, for the OpenAPI description (the body is parsed by hand: a bad one is 400).
ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "labels", "startsAt", "fingerprint"],
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "properties": {"alertname": {"type": "string", "minLength": 1}},
            "required": ["alertname"],
            "description": f"`alertname`, and `{ACTION_LABEL}` (rollback | retrain | none) saying what to do",
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": f"summary, description, runbook_url; `{VALUE_ANNOTATION}` is recorded as a number",
        },
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string", "format": "date-time"},
        "generatorURL": {"type": "string"},
        "fingerprint": {"type": "string", "minLength": 1, "maxLength": 256},
    },
}
NOTIFICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "groupKey", "status", "receiver", "alerts"],
    "properties": {
        "version": {"type": "string", "enum": ["4"]},
        "groupKey": {"type": "string"},
        "truncatedAlerts": {"type": "integer", "minimum": 0},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "receiver": {"type": "string"},
        "groupLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "commonLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "commonAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "externalURL": {"type": "string"},
        "alerts": {"type": "array", "maxItems": MAX_ALERTS, "items": ALERT_SCHEMA},
    },
}

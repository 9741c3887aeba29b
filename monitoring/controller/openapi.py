"""The controller API's bodies, for validation and its OpenAPI description (every status code is stated)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from monitoring.controller.alerts import NOTIFICATION_SCHEMA

OPERATOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}$"
"""As an audit record's actor: letters, digits and . _ : / - (no email addresses)."""


class _Doc(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")


class ErrorResponse(_Doc):
    error: str
    """Error class: MalformedRequest, Unauthorized, PayloadTooLarge, InvalidInput, NotFound, NotReady."""
    message: str
    """What went wrong, for a person."""
    details: Any = None
    """Machine-readable specifics (field errors, limits)."""


class ActionView(_Doc):
    """One action, as the controller's state holds it."""

    id: str
    """The action's id (also in its audit records)."""
    kind: str
    """rollback, retrain, none, pause, resume."""
    actor: str
    """Who or what decided it."""
    phase: str
    """Where it is: pending, starting, running, deploying, done."""
    outcome: str | None
    """How it ended (with phase done)."""
    reason: str
    """The outcome, or the last milestone, in words."""
    alerts: list[dict[str, Any]]
    """The alerts that called for it, with their evidence."""
    details: dict[str, Any]
    """What its steps used and produced."""
    model_version: str | None
    """The version acted on."""
    variant: str | None
    """Its variant."""
    created_at: str
    updated_at: str
    finished_at: str | None


class ReceiveResponse(_Doc):
    alerts: int
    """Alerts in the notification."""
    new: int
    """Firing alerts never seen before (a repeat or a resolution is not new)."""
    actions: list[ActionView]
    """The actions the new alerts called for (decided and committed; acted on in the background)."""


class PauseState(_Doc):
    by: str
    """Who paused it."""
    at: str
    """When."""
    reason: str
    """Why."""


class StatusResponse(_Doc):
    paused: PauseState | None
    """Set while the kill switch is on: alerts are recorded, nothing is done."""
    mode: str
    """local or cluster."""
    open: list[ActionView]
    """Actions under way."""
    recent: list[ActionView]
    """The newest actions, newest first."""


class SwitchRequest(_Doc):
    operator: str = Field(pattern=OPERATOR_PATTERN)
    """Who flips the switch (recorded in the audit trail)."""
    reason: str = Field(default="", max_length=1024)
    """Why."""


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Not JSON, or not an Alertmanager webhook (version 4) payload; nothing was done",
        401: "No bearer token, or not the controller's",
        404: "No such action or experiment",
        409: "Not now: an experiment runs already, or this one awaits no approval",
        413: "Body over max_body_bytes",
        422: "A parameter or field failed validation",
        503: "The controller's state is not open yet (or failed to open): retry",
    }
    return {code: {"model": ErrorResponse, "description": described[code]} for code in codes}


WEBHOOK_BODY = {
    "requestBody": {
        "required": True,
        "description": "Alertmanager's webhook payload, version 4",
        "content": {"application/json": {"schema": NOTIFICATION_SCHEMA}},
    }
}
SWITCH_MAX_BYTES = 64 * 1024


def json_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A required JSON request body of `model`'s schema (routes read their bodies themselves)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


SWITCH_BODY = json_body(SwitchRequest, "Who flips the switch, and why")
PLAIN_503 = {503: {"model": ErrorResponse, "description": "Not up (health) or not ready"}}
SECURITY_SCHEMES = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The token in the controller's token_file (Alertmanager: http_config.authorization)",
    }
}

"""KServe payload-logger CloudEvents (binary content mode, or structured JSON) into KServeMessage records.

Binary mode (what KServe sends): attributes in ce-* headers, the logged payload as the body, its type in
Content-Type. ce-id is KServe's request id; the request and the response arrive as two events.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pydantic_core
from pydantic import ValidationError

from kfloop.audit.record import KSERVE_REQUEST, KSERVE_RESPONSE, KServeMessage
from kfloop.errors import InvalidInput, MalformedRequest

CE_TYPES = {
    "org.kubeflow.serving.inference.request": KSERVE_REQUEST,
    "org.kubeflow.serving.inference.response": KSERVE_RESPONSE,
}
STRUCTURED = "application/cloudevents+json"
REQUIRED = ("specversion", "id", "type", "source")
# record field -> CloudEvent attribute, so errors name what the sender actually sent
ATTRIBUTE_OF = {
    "kind": "type",
    "request_id": "id",
    "ts": "time",
    "source": "source",
    "inference_service": "inferenceservicename",
    "namespace": "namespace",
    "component": "component",
    "endpoint": "endpoint",
    "metadata": "metadata",
    "content_type": "datacontenttype",
    "body": "data",
    "body_base64": "data_base64",
}


def from_binary(headers: Mapping[str, str], body: bytes, received_at: str) -> KServeMessage:
    attributes = {k[3:].lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}
    attributes["datacontenttype"] = headers.get("content-type")
    return _message(attributes, _payload(body, attributes["datacontenttype"]), received_at, prefix="ce-")


def from_structured(event: Any, received_at: str) -> KServeMessage:
    if not isinstance(event, dict):
        raise MalformedRequest("a structured CloudEvent must be a JSON object")
    attributes = {k: v for k, v in event.items() if k not in ("data", "data_base64")}
    data = "data_base64" if "data_base64" in event else "data"
    payload = {"body_base64" if data == "data_base64" else "body": event.get(data)}
    return _message(attributes, payload, received_at, prefix="")


def _payload(body: bytes, content_type: str | None) -> dict[str, Any]:
    """JSON stays JSON (queryable); anything else, or JSON that does not parse, is kept as base64."""
    if not body:
        return {}
    if content_type is None or "json" in content_type.lower():
        try:
            return {"body": pydantic_core.from_json(body, allow_inf_nan=False)}
        except ValueError:
            pass
    return {"body_base64": base64.b64encode(body).decode()}


def _message(attributes: dict[str, Any], payload: dict[str, Any], received_at: str, *, prefix: str) -> KServeMessage:
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        details = [{"field": prefix + name, "reason": "required CloudEvent attribute is missing"} for name in missing]
        raise MalformedRequest(
            f"missing CloudEvent attribute(s): {', '.join(prefix + m for m in missing)}", details=details
        )
    if attributes["specversion"] != "1.0":
        raise InvalidInput(
            "unsupported CloudEvents version",
            details=[{"field": prefix + "specversion", "reason": "must be 1.0"}],
        )
    kind = CE_TYPES.get(attributes["type"]) if isinstance(attributes["type"], str) else None  # JSON: any type
    if kind is None:
        raise InvalidInput(
            f"not a KServe inference log event: {attributes['type']!r}",
            details=[{"field": prefix + "type", "reason": f"must be one of {', '.join(CE_TYPES)}"}],
        )
    fields = {
        "kind": kind,
        "request_id": attributes["id"],
        "ts": attributes.get("time") or received_at,
        "source": attributes["source"],
        "metadata": _metadata(attributes.get("metadata")),
        **payload,
    }
    for field in ("inference_service", "namespace", "component", "endpoint", "content_type"):
        value = attributes.get(ATTRIBUTE_OF[field])
        if value is not None and value != "":  # KServe sends empty extensions as empty strings
            fields[field] = value
    try:
        return KServeMessage.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInput("invalid CloudEvent", details=_named(exc, prefix)) from None


def _metadata(raw: Any) -> Any:
    """ce-metadata is a JSON-encoded map of logged headers; keep it as JSON when it is."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _named(exc: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        head = ATTRIBUTE_OF.get(loc[0], loc[0]) if loc else "(event)"
        out.append({"field": ".".join([prefix + head, *loc[1:]]), "reason": err.get("msg", "invalid")})
    return out

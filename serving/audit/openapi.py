"""The audit sink's OpenAPI document, completed: the bodies it parses itself (records, CloudEvents), the query's
kinds and timestamps, and every status each route answers, errors in the one error shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from kfloop.audit.record import RECORD_TAGS, AuditRecord, KServeMessage
from serving.audit import cloudevents
from serving.common.openapi import ERROR_BODY

REF = "#/components/schemas/{model}"
_WHY = {
    400: "Not JSON, or not one of the accepted shapes (the message names the field)",
    404: "Nothing recorded for that request id",
    409: "A record with this id and different content is stored already: not stored",
    413: "Body, or number of records, over the limit",
    422: "A record or a parameter is invalid (details name the fields)",
    503: "The audit store is not open yet: retry",
}
_STATUSES = {
    ("/readyz", "get"): [503],
    ("/v1/chain/head", "get"): [503],
    ("/v1/decisions", "post"): [400, 413, 422, 503],
    ("/v1/decisions", "get"): [422, 503],
    ("/v1/decisions/{request_id}", "get"): [404, 503],
    ("/v1/cloudevents", "post"): [400, 409, 413, 422, 503],
}
RESULT = {
    "type": "object",
    "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer"},
        "status": {"enum": ["accepted", "duplicate", "conflict", "rejected"]},
        "record_id": {"type": "string"},
        "seq": {"type": "integer"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_COUNT = {"type": "integer", "minimum": 0}
INGEST_RESPONSE = {
    "type": "object",
    "required": ["results", "accepted", "duplicate", "conflict", "rejected"],
    "properties": {
        "results": {"type": "array", "items": RESULT},
        **{status: _COUNT for status in ("accepted", "duplicate", "conflict", "rejected")},
    },
}
APPENDED = {
    "type": "object",
    "required": ["record_id", "status", "seq"],
    "properties": {
        "record_id": {"type": "string"},
        "status": {"enum": ["accepted", "duplicate", "conflict"]},
        "seq": {"type": "integer"},
    },
}


def openapi_builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: FastAPI's document of the routes, completed as this module's docstring says."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            record = TypeAdapter(AuditRecord).json_schema(ref_template=REF, mode="validation")
            schemas.update({**record.pop("$defs", {}), "AuditRecord": record, "Error": ERROR_BODY})
            paths = schema["paths"]
            for (path, method), statuses in _STATUSES.items():
                responses = paths[path][method]["responses"]
                responses.pop("422", None)  # FastAPI's own validation-error body: ours is the one error shape
                responses.update({str(status): _error(_WHY[status]) for status in statuses})
            _document_writes(paths)
            _document_query(paths["/v1/decisions"]["get"])
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def _ok(schema: dict[str, Any], description: str = "Stored (or already stored)") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _document_writes(paths: dict[str, Any]) -> None:
    records = {"type": "array", "minItems": 1, "items": {"$ref": REF.format(model="AuditRecord")}}
    batch = {
        "oneOf": [
            {"type": "object", "required": ["records"], "properties": {"records": records}},
            records,
        ]
    }
    post = paths["/v1/decisions"]["post"]
    post["requestBody"] = {"required": True, "content": {"application/json": {"schema": batch}}}
    post["responses"]["200"] = _ok(INGEST_RESPONSE, "Each record's result (some may be rejected)")
    cloudevent = paths["/v1/cloudevents"]["post"]
    cloudevent["parameters"] = _binary_mode_headers(_attributes())
    attributes = _attributes()
    structured = {
        "type": "object",
        "required": list(cloudevents.REQUIRED),
        "properties": {
            **attributes,
            "data": {},
            "data_base64": {"type": ["string", "null"], "contentEncoding": "base64"},
        },
    }
    cloudevent["requestBody"] = {
        "required": True,
        "content": {
            cloudevents.STRUCTURED: {"schema": structured},
            "application/json": {"schema": {}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    cloudevent["responses"]["200"] = _ok(APPENDED)
    cloudevent["responses"]["409"]["content"]["application/json"]["schema"] = APPENDED


def _attributes() -> dict[str, Any]:
    """The CloudEvent attributes the sink reads, each as its record field states it (KServeMessage)."""
    fields = KServeMessage.model_json_schema()["properties"]
    attributes: dict[str, Any] = {"specversion": {"const": "1.0"}, "type": {"enum": sorted(cloudevents.CE_TYPES)}}
    for field, attribute in cloudevents.ATTRIBUTE_OF.items():
        if field in fields and attribute not in ("type", "metadata", "datacontenttype", "data", "data_base64"):
            schema = next((s for s in fields[field].get("anyOf", []) if s.get("type") != "null"), fields[field])
            schema = {k: v for k, v in schema.items() if k not in ("title", "default", "anyOf")}
            # KServe sends an extension it has no value for as an empty string: taken as absent, as null is
            absent = [{"const": ""}, {"type": "null"}]
            attributes[attribute] = schema if attribute in cloudevents.REQUIRED else {"anyOf": [schema, *absent]}
    return attributes


def _binary_mode_headers(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """KServe's payload logger sends binary mode: the attributes as ce-* headers, the payload as the body (a
    structured CloudEvent carries them in its JSON instead: no header is required then)."""
    return [
        {
            "name": f"ce-{name}",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},  # structured mode does not read the headers: any string is taken then
            "description": ("binary mode: required, " if name in cloudevents.REQUIRED else "binary mode: ")
            + json.dumps(schema),
        }
        for name, schema in attributes.items()
    ]


def _document_query(operation: dict[str, Any]) -> None:
    for parameter in operation["parameters"]:
        if parameter["name"] == "kind":
            parameter["schema"] = {"type": "array", "items": {"enum": sorted(RECORD_TAGS)}}
        elif parameter["name"] in ("since", "until"):
            parameter["schema"] = {"type": "string", "format": "date-time"}

"""The router's OpenAPI document: the model server's routes it passes on (the ranking POSTs to stable or canary,
metadata and readiness from stable), in the model server's own terms (serving/common/openapi.py: the same
request bodies, response schemas and errors), and its own routes (health, readiness, routing table, metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from serving.common.openapi import VERSIONS_NOT_SERVED, complete_document, featured_bodies

DESCRIPTION = (
    "The local stand-in for Knative's traffic split, between the transformer and the predictors: a ranking request "
    "goes to the canary with its share (per user during an experiment), else to stable, and is copied to a shadow; "
    "the predictor's answer is passed on as it is (a canary's 5xx is retried on stable; a stable that fails or "
    "cannot be reached is a 503). Its bodies are the predictor's, which validates them. " + VERSIONS_NOT_SERVED
)
_NOT_READY = {
    "description": "No stable predictor is routed yet",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def document_router(app: FastAPI) -> None:
    """Give the router's app its complete document, built when first asked for."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes)
            complete_document(schema, featured_bodies(), [])
            schema["paths"]["/readyz"]["get"]["responses"]["503"] = _NOT_READY
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]

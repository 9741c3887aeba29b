"""The OpenAPI document of a model server (KServe's routes, as this project serves them): what each route accepts
and answers, status codes included, errors in the one body shape.

FastAPI builds the document from KServe's routes, which declare only 200 and 422. `document_model_server`
completes it: the errors each route answers (ours and KServe's, serving/common/errors.py), /metrics as text,
the V1 ranking body, V2's binary tensor extension (in the description: a fuzzer cannot build a valid one from a
schema), and without the routes this server does not serve (versioned ones, the model repository's load and
unload: 404, serving/common/oip.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.openapi.utils import get_openapi

from serving.common.protocol import CANDIDATES, OUTPUT_TENSORS, USER_ID, K, RankInstance

ERROR_BODY = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a machine code: MalformedRequest, NotFound, NotReady, ..."},
        "message": {"type": "string", "description": "what went wrong, for a person"},
        "details": {"type": "array", "items": {"type": "object"}, "description": "specifics: fields and reasons"},
    },
}
VERSIONS_NOT_SERVED = (
    "Versions are not addressed here: the versioned routes (/v2/models/{name}/versions/{version}/...) and a "
    "`model_version` query parameter answer 404 (NotFound). A server serves one version of its model, by name; "
    "the version served is in the model metadata and in each response (model_version)."
)
NOT_SERVED = ("/versions/", "/repository/")
"""Paths answered 404 here: one version of one model per server, addressed by name."""

_ERRORS = {
    400: "Not a request this route takes (the message names the field and the reason)",
    404: "No model of that name here",
    413: "Body over the limit",
    422: "The body or a parameter is not of the declared type",
    500: "Unexpected error (logged)",
    502: "The upstream (predictor or explainer) failed",
    503: "The model is not ready yet, or its upstream cannot be reached: retry",
}
_RANKING_ROUTES = (":predict", ":explain", "/infer")


def document_model_server(app: Any, *, title: str, models: Callable[[], dict[str, Any]]) -> None:
    """Give `app` (a KServe ModelServer app, routes registered) its complete OpenAPI document, built when first
    asked for from `models()` (name: model; any other name is a 404). A model may state its request bodies
    (`openapi_bodies()`: {"v1": schema, "v2": schema}); by default they are the client's ranking request."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            served = models()
            names = sorted(served)
            stated = [m.openapi_bodies() for m in served.values() if hasattr(m, "openapi_bodies")]
            bodies = stated[0] if stated else {"v1": v1_client_body(), "v2": v2_ranking_request()}
            schema = get_openapi(title=title, version=app.version, description=VERSIONS_NOT_SERVED, routes=app.routes)
            schema["paths"] = {p: ops for p, ops in schema["paths"].items() if not any(s in p for s in NOT_SERVED)}
            app.openapi_schema = complete_document(schema, bodies, names)
        return app.openapi_schema

    app.openapi = build


def complete_document(schema: dict[str, Any], bodies: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """`schema` (FastAPI's document of KServe's routes, or of routes with the same paths and a `model_name`
    parameter, as the local router's) completed: the errors, the ranking bodies (`bodies`), the V2 and error
    schemas; `names` the models served (empty: any name, one not served behind is a 404)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update({**_inference_response_schemas(), **_instance_definitions(), "Error": ERROR_BODY})
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            _complete(path, operation, bodies)
            _name_the_models(operation, names)
    return schema


def v1_client_body() -> dict[str, Any]:
    """A V1 body as a client sends it: {"instances": [RankInstance, ...]} (its definitions inline)."""
    instance = RankInstance.model_json_schema(ref_template="#/components/schemas/{model}")
    instance["properties"]["candidates"]["anyOf"][0]["uniqueItems"] = True  # RankInstance's validator says so
    return {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": 64, "items": _without_defs(instance)}},
    }


def _without_defs(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$defs"}


def _name_the_models(operation: dict[str, Any], names: list[str]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["name"] == "model_name" and names:
            parameter["schema"] = {"type": "string", "enum": names, "title": "Model Name"}
            parameter["description"] = "the model served here (any other name: 404)"


def _complete(path: str, operation: dict[str, Any], bodies: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    ranking = path.endswith(_RANKING_ROUTES)
    statuses = [500]
    if "{model_name}" in path:
        statuses += [404, 503]
        operation["parameters"] = [p for p in operation.get("parameters", []) if p["name"] != "model_version"]
    if ranking:
        statuses += [400, 413, 502]
    if path in ("/v2/health/ready", "/v2/health/live"):
        statuses.append(503)
    for status in statuses:
        responses.setdefault(str(status), _error(_ERRORS[status]))
    if "422" in responses:
        responses["422"] = _error(_ERRORS[422])
    if path == "/metrics":
        responses["200"] = {
            "description": "Prometheus metrics",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    elif path.endswith(":predict") or path.endswith(":explain"):
        operation["requestBody"] = _json_body(bodies["v1"])
    elif path.endswith("/infer"):
        _document_infer(operation, bodies["v2"])


def featured_bodies() -> dict[str, Any]:
    """The predictor's requests, as the transformer sends them: candidates required, and the features (the
    model version's inputs, by name: a missing or mistyped one is a 400 naming it)."""
    v1 = v1_client_body()
    instance = dict(v1["properties"]["instances"]["items"])
    instance["required"] = [*instance.get("required", []), "candidates", "features"]
    features = {"type": "object", "additionalProperties": True, "description": "{name: value} per the model's inputs"}
    block = {"user": features, "items": features, "items_mostly": features}
    instance["properties"] = {
        **instance["properties"],
        "features": {"type": "object", "required": ["user", "items"], "properties": block},
    }
    v1["properties"]["instances"]["items"] = instance
    v2 = v2_ranking_request()
    feature = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "not": {"enum": [USER_ID, CANDIDATES, K]}},
            "shape": _SHAPE,
            "datatype": {"enum": ["BYTES", "BOOL", "INT32", "INT64", "FP32", "FP64"]},
            "data": {"type": "array", "items": {"type": ["string", "number", "boolean"]}},
        },
    }
    v2["properties"]["inputs"]["items"]["oneOf"].append(feature)
    return {"v1": v1, "v2": v2}


def v2_ranking_request() -> dict[str, Any]:
    """The ranker's V2 request: the inputs user_id, candidates (optional), k (optional), the outputs it may ask
    for, its id (the request id) and parameters. A tensor's shape must match its data's length, which JSON
    Schema cannot state: a request where they differ is a 400."""
    instance = RankInstance.model_json_schema()["properties"]
    one = {"type": "array", "items": {"type": "integer", "const": 1}, "minItems": 1, "maxItems": 1}
    identifier = instance["request_id"]["anyOf"][0]
    user_id = _tensor(USER_ID, "BYTES", one, instance["user_id"], max_items=1)
    candidates = _tensor(CANDIDATES, "BYTES", _SHAPE, identifier, max_items=1000)
    candidates["properties"]["data"]["uniqueItems"] = True
    k = _tensor(K, "INT32", one, {"type": "integer", "minimum": 1, "maximum": 100}, max_items=1)
    output = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"enum": list(OUTPUT_TENSORS)},
            "parameters": {
                "type": "object",
                "properties": {"binary_data": {"type": "boolean"}},
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
        },
    }
    parameters = {
        "consent": {"type": "string", "description": 'the V1 consent object as a JSON string: {"personalization": b}'},
        "binary_data_output": {"type": "boolean"},
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": identifier,
            "inputs": {"type": "array", "items": {"oneOf": [user_id, candidates, k]}, "contains": user_id},
            "outputs": {"type": "array", "items": output},
            "parameters": {
                "type": "object",
                "properties": parameters,
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
        },
    }


_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 1}


def _tensor(name: str, datatype: str, shape: dict[str, Any], item: dict[str, Any], *, max_items: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"const": name},
            "shape": shape,
            "datatype": {"const": datatype},
            "data": {"type": "array", "minItems": 1, "maxItems": max_items, "items": item},
        },
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _document_infer(operation: dict[str, Any], body: dict[str, Any]) -> None:
    operation["requestBody"] = _json_body(body)
    operation["description"] = (
        "The Open Inference Protocol's infer. Binary tensor data extension: a body that is the JSON request "
        "followed by the raw tensors, with the header Inference-Header-Content-Length (the JSON's length); "
        "outputs asked as binary (`binary_data`, or the request's `binary_data_output`) come back raw after the "
        "JSON, the response then carrying its own Inference-Header-Content-Length (content application/octet-stream)."
    )
    ok = operation["responses"]["200"]
    ok["content"] = {
        "application/json": {"schema": {"$ref": "#/components/schemas/InferenceResponse"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }


def _instance_definitions() -> dict[str, Any]:
    return RankInstance.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {})


def _inference_response_schemas() -> dict[str, Any]:
    """KServe's InferenceResponse (its V2 route declares no response model: it may answer bytes)."""
    from kserve.protocol.rest.v2_datamodels import InferenceResponse

    schema = InferenceResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {**definitions, "InferenceResponse": schema}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }

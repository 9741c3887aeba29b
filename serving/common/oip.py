"""The Open Inference Protocol's edges that KServe's machinery carries once it is asked to: the binary tensor
data extension (REST), requested outputs, and gRPC errors in their status codes.

- Binary tensors in: a body that is a JSON header followed by raw tensor bytes comes with the
  `Inference-Header-Content-Length` header. KServe's V2 handler decodes it (DataPlane.decode ->
  InferRequest.from_bytes) when FastAPI hands it the body as bytes, which it does for a non-JSON content type:
  `OipContentType` says so for such a request, whatever content type the client sent (clients send none,
  application/json or application/octet-stream).
- Outputs: `answer_as_asked` keeps only the requested outputs, in the order asked, and lets KServe's
  InferResponse.to_rest() encode each as JSON or raw bytes (its `binary_data` parameter; unset: the request's
  `binary_data_output`, as the protocol's extension defines) with the response's `Inference-Header-Content-Length`.
  Over gRPC the outputs go as KServe sends them (raw contents when the inputs came raw).
- gRPC: KServe's ModelServer serves GRPCInferenceService; `KfloopGRPCServer` answers our errors (KfloopError)
  with the status code matching their HTTP status instead of INTERNAL, and logs no line per call.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent import futures
from typing import Any
from urllib.parse import parse_qs

from grpc import StatusCode, aio
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from starlette.responses import JSONResponse

from kfloop.errors import KfloopError, MalformedRequest, NotFound

BINARY_HEADER = b"inference-header-content-length"
_CONTENT_TYPE = b"content-type"


class OipContentType:
    """The content type a model server's routes act on: the binary tensor extension's bodies are bytes for
    KServe's V2 handler; a request without a content type is JSON (KServe 0.15's own InferenceRESTClient posts
    a JSON V2 request without one)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if any(name == BINARY_HEADER for name, _ in headers):
                kept = [(name, value) for name, value in headers if name != _CONTENT_TYPE]
                scope = dict(scope, headers=[*kept, (_CONTENT_TYPE, b"application/octet-stream")])
            elif not any(name == _CONTENT_TYPE for name, _ in headers):
                scope = dict(scope, headers=[*headers, (_CONTENT_TYPE, b"application/json")])
            send = _typed_binary_answers(send)
        await self.app(scope, receive, send)


def _typed_binary_answers(send: Any) -> Any:
    """KServe answers binary tensors with no content type: name it, as the document states."""

    async def typed(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if BINARY_HEADER in names and _CONTENT_TYPE not in names:
                message = dict(message, headers=[*headers, (_CONTENT_TYPE, b"application/octet-stream")])
        await send(message)

    return typed


def requested_outputs(request: Any, known: Iterable[str]) -> list[Any] | None:
    """The request's requested outputs with each one's `binary_data` decided (None: every output, as the
    request's `binary_data_output` says). An unknown name is a 400 naming it and the outputs there are."""
    asked = getattr(request, "request_outputs", None)
    if not asked:
        return None
    known = list(known)
    unknown = [output.name for output in asked if output.name not in known]
    if unknown:
        raise MalformedRequest(f"unknown output(s) {', '.join(unknown)}: the outputs are {', '.join(known)}")
    binary_default = bool(request.use_binary_outputs)
    for output in asked:
        if output.binary_data is None:
            output.parameters = {**(output.parameters or {}), "binary_data": binary_default}
    return list(asked)


def answer_as_asked(request: Any, outputs: list[Any], **response: Any) -> Any:
    """An InferResponse (`response`: its other constructor arguments) holding what the request asked for: only
    its requested outputs, in the order asked, each encoded as asked; without any, every output in the form the
    request's `binary_data_output` gives."""
    from kserve import InferResponse

    asked = requested_outputs(request, [output.name for output in outputs])
    if asked is not None:
        by_name = {output.name: output for output in outputs}
        outputs = [by_name[output.name] for output in asked]
    binary = bool(getattr(request, "use_binary_outputs", False))
    return InferResponse(infer_outputs=outputs, requested_outputs=asked, use_binary_outputs=binary, **response)


VERSIONED_ROUTES = (
    "/v2/models/{model_name}/versions/{model_version}",
    "/v2/models/{model_name}/versions/{model_version}/{rest:path}",
)


def _version_not_found(model_name: str) -> NotFound:
    return NotFound(
        f"model {model_name}: versions are not addressed here; use /v2/models/{model_name}/... without one "
        "(the version served is in the model metadata and each response's model_version)"
    )


def register_versioned_routes_as_not_found(app: Any) -> None:
    """The protocol's versioned routes are 404: a model server here serves one version of its model, addressed
    by name (KServe's own versioned routes answer 501 "not supported yet"). Registered before KServe's."""

    async def not_served(model_name: str, model_version: str) -> None:
        raise _version_not_found(model_name)

    for path in VERSIONED_ROUTES:
        app.add_api_route(path, not_served, methods=["GET", "POST"], include_in_schema=False)


class VersionQueryNotFound:
    """KServe's V2 routes take a `model_version` query parameter and answer 501 "not supported yet" when it is
    set: here it is a 404 in the one error shape, as the versioned routes are."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/v2/models/") and parse_qs(scope.get("query_string", b"").decode("latin-1")).get(
            "model_version"
        ):
            error = _version_not_found(path.split("/")[3])
            await JSONResponse(error.to_dict(), status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# -- gRPC ----------------------------------------------------------------------------------------------------

_GRPC_STATUS = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    413: StatusCode.RESOURCE_EXHAUSTED,
    422: StatusCode.INVALID_ARGUMENT,
    501: StatusCode.UNIMPLEMENTED,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
}


def grpc_status(http_status: int) -> StatusCode:
    """The gRPC status code of an error answered over REST with `http_status`."""
    return _GRPC_STATUS.get(http_status, StatusCode.INTERNAL)


class KfloopExceptionToStatus(ExceptionToStatusInterceptor):
    """KServe's mapping of its own errors, and ours by their HTTP status (the message as on REST)."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> None:
        if isinstance(ex, KfloopError):
            await context.abort(grpc_status(ex.http_status), ex.message)
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class KfloopGRPCServer(GRPCServer):
    """KServe's gRPC server (its servicer and options) with KfloopExceptionToStatus as its one interceptor."""

    async def start(self, max_workers: int) -> None:
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(KfloopExceptionToStatus(),),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()

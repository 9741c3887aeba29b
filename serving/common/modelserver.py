"""kserve.ModelServer as every role here runs it: REST (and gRPC when configured), quiet, on uvloop, V1
predict on a short path, every error in the one body shape.

The boundary is two subclasses, not patches. KServe 0.15.2 offers no constructor argument or public hook for
an app's middlewares (its timing middleware is always added) or its exception handlers (its own are added at
start, over any registered before), and ModelServer.start() builds KServe's RESTServer itself. So:
- KfloopRESTServer overrides RESTServer.create_application(), the public step that builds the app at start:
  KServe's endpoints (its `_register_endpoints`, called, not replaced), our middlewares instead of KServe's
  timing middleware, and our error handlers instead of KServe's (serving/common/errors.py).
- KfloopModelServer overrides ModelServer.start(), the public entry point: the same steps as KServe's for one
  worker, building a KfloopRESTServer (and, with a gRPC port, KServe's gRPC server with our error mapping:
  serving/common/oip.py), on a uvloop loop that KServe's setup_event_loop() configures
  (KServe's own start configures the loop it finds before `asyncio.run` makes another).
Both are checked against KServe's own answers by tests/unit/test_serving_modelserver.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import kserve
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import args as model_server_args
from kserve.protocol.rest.server import RESTServer
from uvicorn.importer import import_from_string

from serving.common.errors import install_kserve_error_handlers
from serving.common.oip import (
    KfloopGRPCServer,
    OipContentType,
    VersionQueryNotFound,
    register_versioned_routes_as_not_found,
)
from serving.common.openapi import document_model_server
from serving.common.ranking_metrics import RankingAnswers


class V1PredictFastPath:
    """`POST /v1/models/{name}:predict` answered by KServe's own V1 handler (V1Endpoints.predict: decode,
    infer, encode through the DataPlane) without FastAPI's routing, dependency and telemetry layers, which
    cost ~0.8 ms of CPU a request here (measured: a trivial model, 12 KB body, 1.3 ms through FastAPI, 0.55 ms
    on a bare ASGI app); with two model servers on the ranking path that is a fifth of its CPU. Errors get the
    app's own handlers (the same status and body as on the route; one without a handler goes on to the app's
    catch-all); every other route is KServe's app unchanged."""

    def __init__(self, app: Any, *, dataplane: Any, kserve_app: Any) -> None:
        from kserve.protocol.rest.v1_endpoints import V1Endpoints

        self.app, self.kserve_app = app, kserve_app
        self.endpoints = V1Endpoints(dataplane)  # KServe's own V1 handler, called without FastAPI around it

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] != "POST" and _V1_VERB.match(scope["path"]):
            await _post_only(scope, receive, send)
            return
        match = _V1_PREDICT.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope, receive)
        try:
            response = await self._predict(match.group(1), request)
        except Exception as exc:
            response = await self._error_response(request, exc)
        await response(scope, receive, send)

    async def _predict(self, model_name: str, request: Any) -> Any:
        return await self.endpoints.predict(model_name, request)  # always a Response

    async def _error_response(self, request: Any, exc: Exception) -> Any:
        for cls in type(exc).__mro__:
            handler = self.kserve_app.exception_handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc


_V1_PREDICT = re.compile(r"^/v1/models/([^/]+):predict$")
_V1_VERB = re.compile(r"^/v1/models/[^/]+:(predict|explain)$")


async def _post_only(scope: Any, receive: Any, send: Any) -> None:
    """405 for :predict/:explain asked with another method. Without it the router's answer would come from
    `GET /v1/models/{name}`, whose pattern the path also fits: `Allow: GET`, for a resource that takes POST."""
    from starlette.responses import JSONResponse

    from kfloop.errors import error_body

    body = error_body("MethodNotAllowed", f"{scope['method']} is not allowed here: POST")
    await JSONResponse(body, status_code=405, headers={"Allow": "POST"})(scope, receive, send)


class KfloopRESTServer(RESTServer):
    """KServe's REST server; `app` may be an import string (KServe's app, the default) or an app (tests)."""

    def create_application(self) -> None:
        app = import_from_string(self.config.app)  # an app object passes through unchanged
        register_versioned_routes_as_not_found(app)  # before KServe's, which answer 501 "not supported yet"
        self._register_endpoints(app)
        document_model_server(
            app,
            title="kfloop model server (KServe V1 and V2, the Open Inference Protocol)",
            models=self.dataplane.model_registry.get_models,
        )
        install_model_server_edges(app, self.dataplane)


def install_model_server_edges(app: Any, dataplane: Any) -> None:
    """Middlewares and error handlers, in place of KServe's. Its timing middleware's only output is two log
    lines per request (silenced anyway) and its metric naming costs more than the router hop; its Prometheus
    histograms stay. Added innermost first: the catch-all (added with the handlers) wraps the fast path, each
    ranking request's final status and time are observed around both, and the JSON default wraps all, so the
    fast path sees the content type."""
    app.add_middleware(V1PredictFastPath, dataplane=dataplane, kserve_app=app)
    install_kserve_error_handlers(app)
    app.add_middleware(RankingAnswers, dataplane=dataplane)
    app.add_middleware(OipContentType)
    app.add_middleware(VersionQueryNotFound)


class KfloopModelServer(kserve.ModelServer):
    """A ModelServer without a log line per request (at 200 requests/s they cost CPU; KServe's Prometheus
    histograms at /metrics keep the timings), on uvloop; gRPC (KServe's GRPCInferenceService) when a port is
    given."""

    def __init__(self, http_port: int, registered_models: Any = None, *, grpc_port: int | None = None) -> None:
        super().__init__(
            http_port=http_port,
            grpc_port=grpc_port or 0,
            enable_grpc=grpc_port is not None,
            enable_latency_logging=False,
            registered_models=registered_models,
        )
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def start(self, models: list[Any]) -> None:
        import uvloop

        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = KfloopRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            grace_period=self.grace_period,
        )
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = KfloopGRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension, kwargs=vars(model_server_args)
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            asyncio.set_event_loop(runner.get_loop())  # the loop KServe's setup_event_loop() configures
            self.setup_event_loop()
            self.register_signal_handler()
            runner.run(self._serve())

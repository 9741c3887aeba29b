"""kserve.ModelServer as every role here runs it: REST only, quiet, on uvloop, V1 predict on a short path."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from serving.common.ranking_metrics import RankingAnswers


class JsonByDefault:
    """A request without a Content-Type is JSON. KServe 0.15's own InferenceRESTClient posts a JSON V2 request
    without one, and its server then reads the body as binary tensors and refuses it (400): with this, KServe's
    client works against these servers unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not any(name == b"content-type" for name, _ in scope["headers"]):
            scope = dict(scope, headers=[*scope["headers"], (b"content-type", b"application/json")])
        await self.app(scope, receive, send)


class V1PredictFastPath:
    """`POST /v1/models/{name}:predict` answered by KServe's own V1 handler (V1Endpoints.predict: decode,
    infer, encode through the DataPlane) without FastAPI's routing, dependency and telemetry layers, which
    cost ~0.8 ms of CPU a request here (measured: a trivial model, 12 KB body, 1.3 ms through FastAPI, 0.55 ms
    on a bare ASGI app); with two model servers on the ranking path that is a fifth of its CPU. Errors get
    KServe's own handlers (the same status and body); every other route is KServe's app unchanged."""

    def __init__(self, app: Any, *, dataplane: Any, kserve_app: Any) -> None:
        from kserve.protocol.rest.v1_endpoints import V1Endpoints

        self.app, self.kserve_app = app, kserve_app
        self.endpoints = V1Endpoints(dataplane)  # KServe's own V1 handler, called without FastAPI around it

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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


def _add_middlewares(rest_server: Any, app: Any) -> None:
    """In place of KServe's: its timing middleware's only output is two log lines per request (silenced
    anyway) and its metric naming costs more than the router hop; its Prometheus histograms stay. Each ranking
    request's status and time are observed outside the fast path and KServe's error handlers."""
    app.add_middleware(V1PredictFastPath, dataplane=rest_server.dataplane, kserve_app=app)
    app.add_middleware(RankingAnswers, dataplane=rest_server.dataplane)
    app.add_middleware(JsonByDefault)  # added last: the outermost, so the fast path sees the content type


def quiet_model_server(http_port: int, repository: Any = None) -> Any:
    """A ModelServer without gRPC and without a log line per request (at 200 requests/s they cost CPU;
    KServe's Prometheus histograms at /metrics keep the timings). Started on uvloop: KServe runs its server
    in `asyncio.run`, so the installed loop policy decides the loop."""
    import kserve
    import uvloop
    from kserve.protocol.rest import server as rest_server

    rest_server.RESTServer._add_middlewares = _add_middlewares

    server = kserve.ModelServer(
        http_port=http_port, enable_grpc=False, enable_latency_logging=False, registered_models=repository
    )
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uvloop.install()
    # ModelServer.start() asks for the current loop before its asyncio.run(); uvloop's policy makes none
    asyncio.set_event_loop(asyncio.new_event_loop())
    return server

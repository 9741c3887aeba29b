"""kserve.ModelServer as every role here runs it: REST only, quiet, on uvloop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any


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


def quiet_model_server(http_port: int, repository: Any = None) -> Any:
    """A ModelServer without gRPC and without a log line per request (at 200 requests/s they cost CPU;
    KServe's Prometheus histograms at /metrics keep the timings). Started on uvloop: KServe runs its server
    in `asyncio.run`, so the installed loop policy decides the loop."""
    import kserve
    import uvloop
    from kserve.protocol.rest import server as rest_server

    # KServe wraps every request in a timing middleware whose only output is two log lines (silenced below);
    # its metric naming and formatting cost more than the router hop. Its Prometheus histograms stay.
    rest_server.RESTServer._add_middlewares = lambda self, app: app.add_middleware(JsonByDefault)

    server = kserve.ModelServer(
        http_port=http_port, enable_grpc=False, enable_latency_logging=False, registered_models=repository
    )
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uvloop.install()
    # ModelServer.start() asks for the current loop before its asyncio.run(); uvloop's policy makes none
    asyncio.set_event_loop(asyncio.new_event_loop())
    return server

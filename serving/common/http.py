"""One mapping from errors to HTTP, installed on every service.

Every error is answered in one body shape (kfloop.errors.error_body): {"error": a machine code, "message": for
a person, "details": optional, a list of objects such as {"field": ..., "reason": ...}}. KfloopError subclasses
carry their status; FastAPI's own errors (404, 405, parameter validation) get the same shape; anything
unexpected becomes a logged 500 instead of a dropped connection. The KServe roles add KServe's exception types
(serving/common/errors.py).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfloop.errors import KfloopError, error_body

log = logging.getLogger(__name__)


def kfloop_error_response(exc: KfloopError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.http_status)


async def _on_kfloop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KfloopError)
    if exc.http_status >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc.message)
    return kfloop_error_response(exc)


def _status_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return "HTTPError"


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = error_body(_status_name(exc.status_code), str(exc.detail))
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), **_allow(request)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _leaf_routes(routes: list[Any]) -> list[Any]:
    """The routes, those of included routers (FastAPI keeps an included router whole) in their place."""
    leaves = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        leaves.extend(_leaf_routes(inner.routes) if inner is not None else [route])
    return leaves


def _allow(request: Request) -> dict[str, str]:
    """Every method served at the request's path: Starlette's 405 names only the first route whose path
    matched, so a path with a GET route and a POST route would answer `Allow: GET` alone."""
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        if getattr(route, "methods", None) and hasattr(route, "matches"):
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= set(route.methods)
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "reason": err.get("msg", "invalid")}
        for err in exc.errors()
    ]
    message = "; ".join(f"{d['field']}: {d['reason']}" for d in details) or "request validation failed"
    return JSONResponse(error_body("InvalidInput", message, details), status_code=422)


_INTERNAL = json.dumps(error_body("InternalError", "internal error; the server logged the details")).encode()


class CatchAllMiddleware:
    """Turn an unexpected exception into a logged 500 JSON response (if no response has started yet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # too late for a clean response; the server closes the connection
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_INTERNAL))]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": _INTERNAL})


def install_error_handlers(app: FastAPI) -> None:
    """Install the project's error-to-HTTP mapping on an app (call once, in its factory)."""
    app.add_exception_handler(KfloopError, _on_kfloop_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_middleware(CatchAllMiddleware)

"""Errors on the KServe side, in the one body shape every kfloop service answers (see serving/common/http.py).

The roles' models raise KfloopError (each subclass carries its status); KServe's own code raises its exception
types (ModelNotFound, ModelNotReady, InvalidInput, ...). Both are mapped to HTTP here, by handlers registered
once on the app, as KServe registers its own; the statuses are KServe's, the body is ours.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from kserve import errors as kserve_errors
from prometheus_client import Counter
from starlette.responses import JSONResponse, Response

from kfloop.errors import KfloopError, error_body
from serving.common.http import install_error_handlers

log = logging.getLogger(__name__)

REJECTED = Counter("kfloop_predictor_rejected_total", "Requests answered with an error, by HTTP status.", ["status"])


# KServe's exception types, with the status KServe answers each with and our code for it
KSERVE_ERRORS: dict[type[Exception], tuple[int, str]] = {
    kserve_errors.InvalidInput: (400, "MalformedRequest"),  # KServe raises it for a body it cannot decode
    kserve_errors.ModelNotFound: (404, "NotFound"),
    kserve_errors.ModelNotReady: (503, "NotReady"),
    kserve_errors.ServerNotReady: (503, "NotReady"),
    kserve_errors.ServerNotLive: (503, "NotReady"),
    kserve_errors.UnsupportedProtocol: (501, "NotImplemented"),
    NotImplementedError: (501, "NotImplemented"),
    kserve_errors.InferenceError: (500, "InferenceError"),
}


def _answer(request: Request, status: int, body: dict[str, Any]) -> Response:
    REJECTED.labels(str(status)).inc()
    if status >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, body["error"], body["message"])
    return JSONResponse(body, status_code=status)


async def _on_kfloop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KfloopError)
    return _answer(request, exc.http_status, exc.to_dict())


def _kserve_handler(status: int, code: str) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        return _answer(request, _status_of(exc, status), error_body(code, _message_of(exc)))

    return handle


def _status_of(exc: Exception, default: int) -> int:
    """An InferenceError may carry its own status (a string: "404")."""
    declared = exc.status if isinstance(exc, kserve_errors.InferenceError) else None
    if declared is None or not str(declared).isdigit() or not 400 <= int(declared) <= 599:
        return default
    return int(declared)


def _message_of(exc: Exception) -> str:
    if isinstance(exc, kserve_errors.InferenceError) and exc.reason:
        return str(exc.reason)  # its str() prefixes the status, which the response already carries
    return str(exc) or type(exc).__name__


def install_kserve_error_handlers(app: FastAPI) -> None:
    """On a KServe ModelServer's app, in place of KServe's own handlers: every error in the one body shape.
    FastAPI's 404/405/422 and unexpected exceptions (a logged 500) are answered as on every other service."""
    install_error_handlers(app)
    app.add_exception_handler(KfloopError, _on_kfloop_error)  # the counting one, over the shared one
    for kind, (status, code) in KSERVE_ERRORS.items():
        app.add_exception_handler(kind, _kserve_handler(status, code))

"""serving.common: the shared error mapping and body reader, on a minimal app of their own."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from kfloop.errors import DataIntegrityError, PayloadTooLarge
from serving.common.body import read_body
from serving.common.http import install_error_handlers

pytestmark = pytest.mark.serving


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise ZeroDivisionError("a bug")

    @app.get("/too-large")
    async def too_large() -> None:
        raise PayloadTooLarge("over", details={"limit_bytes": 1})

    @app.get("/integrity")
    async def integrity() -> None:
        raise DataIntegrityError("hash chain broken")

    @app.get("/typed")
    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await read_body(request, 100))}

    return app


def test_an_unexpected_exception_is_a_logged_500_in_the_error_shape(caplog):
    client = TestClient(make_app())
    with caplog.at_level(logging.ERROR, logger="serving.common.http"):
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "InternalError", "message": "internal error; the server logged the details"}
    assert "ZeroDivisionError" in caplog.text


def test_kfloop_errors_map_to_their_status():
    client = TestClient(make_app())
    too_large = client.get("/too-large")
    assert too_large.status_code == 413
    # one object as details is listed: details is always a list
    assert too_large.json() == {"error": "PayloadTooLarge", "message": "over", "details": [{"limit_bytes": 1}]}
    assert client.get("/integrity").status_code == 500


def test_fastapi_parameter_errors_use_the_same_shape():
    response = TestClient(make_app()).get("/typed", params={"n": "x"})
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidInput"
    assert response.json()["details"][0]["field"] == "query.n"


def test_read_body_bounds_the_body():
    client = TestClient(make_app())
    assert client.post("/echo", content=b"x" * 100).json() == {"bytes": 100}
    assert client.post("/echo", content=b"x" * 101).status_code == 413
    assert client.post("/echo", content=b"1", headers={"content-length": "lots"}).status_code == 400

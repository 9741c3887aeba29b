"""The model server's edges (serving/common/modelserver.py): KServe's routes with our middlewares and error
handlers in place of KServe's; the V1 predict fast path answers exactly as KServe's own FastAPI route does on
the same app: results, error statuses and bodies, unknown and not-ready models, bodies that are not JSON, a
model that raises."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
import kserve
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.testclient import TestClient

from serving.common.errors import install_kserve_error_handlers
from serving.common.http import CatchAllMiddleware
from serving.common.modelserver import KfloopModelServer, KfloopRESTServer, V1PredictFastPath
from serving.common.oip import OipContentType, VersionQueryNotFound
from serving.common.ranking_metrics import RankingAnswers

pytestmark = pytest.mark.serving


class Echo(kserve.Model):
    def __init__(self, name: str, ready: bool = True) -> None:
        super().__init__(name)
        self.ready = ready

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if instances == ["bad"]:
            raise InvalidInput("instances[0]: not a ranking request")
        if instances == ["boom"]:
            raise RuntimeError("the model broke")
        return {"predictions": instances}


def _server() -> tuple[FastAPI, KfloopRESTServer]:
    repository = ModelRepository()
    repository.update(Echo("echo"))
    repository.update(Echo("loading", ready=False))
    app = FastAPI(default_response_class=ORJSONResponse)  # as KServe's own app
    return app, KfloopRESTServer(app, DataPlane(repository), ModelRepositoryExtension(repository), 0)


def kfloop_app() -> FastAPI:
    app, server = _server()
    server.create_application()
    return app


def kserve_routes_alone() -> FastAPI:
    """The same app without the fast path: every request through KServe's FastAPI routes."""
    app, server = _server()
    server._register_endpoints(app)
    install_kserve_error_handlers(app)
    app.add_middleware(OipContentType)
    return app


@pytest.fixture
def clients(monkeypatch):
    calls: list[str] = []
    predict = V1PredictFastPath._predict

    async def counted(self: V1PredictFastPath, model_name: str, request: Any) -> Any:
        calls.append(model_name)
        return await predict(self, model_name, request)

    monkeypatch.setattr(V1PredictFastPath, "_predict", counted)
    own_client = TestClient(kserve_routes_alone(), raise_server_exceptions=False)
    with own_client as a, TestClient(kfloop_app(), raise_server_exceptions=False) as b:
        yield a, b, calls


def test_our_middlewares_replace_kserves_and_wrap_in_order():
    app = kfloop_app()
    # outermost first: KServe's `?model_version=` answered 404 (not its 501), the JSON default, the ranking answers'
    # observer (serving/common/ranking_metrics.py), the catch-all around the fast path; no KServe timing middleware
    middlewares = [m.cls for m in app.user_middleware]
    expected = [VersionQueryNotFound, OipContentType, RankingAnswers, CatchAllMiddleware, V1PredictFastPath]
    assert middlewares == expected
    handlers = {kind.__name__: handler.__module__ for kind, handler in app.exception_handlers.items()}
    assert handlers["InvalidInput"] == handlers["ModelNotFound"] == handlers["KfloopError"] == "serving.common.errors"
    assert "Exception" not in handlers  # an unexpected exception is the catch-all's logged 500


def test_the_model_server_is_rest_only_and_quiet():
    server = KfloopModelServer(0)
    assert not server.enable_grpc and not server.enable_latency_logging


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/echo:predict", b'{"instances": [1, 2]}', 200),
        ("/v1/models/echo:predict", b'{"instances": ["bad"]}', 400),
        ("/v1/models/echo:predict", b'{"instances": ["boom"]}', 500),
        ("/v1/models/echo:predict", b"{not json", 400),
        ("/v1/models/loading:predict", b'{"instances": [1]}', 503),
        ("/v1/models/nobody:predict", b'{"instances": [1]}', 404),
    ],
)
def test_the_fast_path_answers_as_kserves_route_does(clients, path, body, status):
    kserves_own, fast, calls = clients
    expected = kserves_own.post(path, content=body, headers={"content-type": "application/json"})
    answer = fast.post(path, content=body)  # no content type: JSON by default, as on KServe's route with it
    assert calls == [path.split("/")[3].removesuffix(":predict")]  # answered by the fast path
    assert expected.status_code == status
    assert status == 200 or set(expected.json()) >= {"error", "message"}  # the one error shape
    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())
    assert answer.headers["content-type"] == expected.headers["content-type"]


def test_other_routes_are_kserves(clients):
    kserves_own, fast, calls = clients
    for path in ("/v1/models/echo", "/v2/models/echo/ready", "/v2/health/live"):
        assert fast.get(path).json() == kserves_own.get(path).json()
    # one deliberate difference: KServe's GET /v1/models/{name} takes "echo:predict" for a model name (a 404);
    # here a verb route asked with another method is a 405 that names the method it takes
    assert kserves_own.get("/v1/models/echo:predict").status_code == 404
    for method in ("GET", "PUT", "DELETE"):
        refused = fast.request(method, "/v1/models/echo:explain")
        answer = (refused.status_code, refused.headers["allow"], refused.json()["error"])
        assert answer == (405, "POST", "MethodNotAllowed")
    assert calls == []

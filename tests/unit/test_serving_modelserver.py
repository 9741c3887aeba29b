"""The V1 predict fast path answers exactly as KServe's own FastAPI route does: results, KServe's error
statuses and bodies, unknown and not-ready models, bodies that are not JSON, a model that raises."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
import kserve
from fastapi import FastAPI
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest import server as rest_server
from starlette.testclient import TestClient

from serving.common.modelserver import JsonByDefault, V1PredictFastPath, _add_middlewares

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


def _app(monkeypatch: pytest.MonkeyPatch, middlewares: Any) -> FastAPI:
    repository = ModelRepository()
    repository.update(Echo("echo"))
    repository.update(Echo("loading", ready=False))
    app = FastAPI()
    monkeypatch.setattr(rest_server, "import_from_string", lambda _: app)
    monkeypatch.setattr(rest_server.RESTServer, "_add_middlewares", middlewares)
    rest = rest_server.RESTServer("unused:app", DataPlane(repository), ModelRepositoryExtension(repository), 0)
    rest.create_application()
    return app


@pytest.fixture
def clients(monkeypatch):
    kserves_own = _app(monkeypatch, lambda self, app: app.add_middleware(JsonByDefault))
    fast = _app(monkeypatch, _add_middlewares)
    assert any(m.cls is V1PredictFastPath for m in fast.user_middleware)
    calls: list[str] = []
    predict = V1PredictFastPath._predict

    async def counted(self: V1PredictFastPath, model_name: str, request: Any) -> Any:
        calls.append(model_name)
        return await predict(self, model_name, request)

    monkeypatch.setattr(V1PredictFastPath, "_predict", counted)
    own_client = TestClient(kserves_own, raise_server_exceptions=False)
    with own_client as a, TestClient(fast, raise_server_exceptions=False) as b:
        yield a, b, calls


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
    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())
    assert answer.headers["content-type"] == expected.headers["content-type"]


def test_other_routes_are_kserves(clients):
    kserves_own, fast, calls = clients
    for path in ("/v1/models/echo", "/v2/models/echo/ready", "/v2/health/live"):
        assert fast.get(path).json() == kserves_own.get(path).json()
    assert fast.get("/v1/models/echo:predict").status_code == kserves_own.get("/v1/models/echo:predict").status_code
    assert calls == []

"""One error body shape for every HTTP service: a bad request to the collector, the audit sink, the router, the
transformer, the predictor and the explainer (each app in process, built as it is served) is answered with
{"error": a machine code, "message": for a person, "details": optional, a list of objects}, whoever raised the
error: our code (KfloopError), KServe's (unknown or not-ready model, a body it cannot decode), FastAPI's
(unknown route, a V2 body that fails validation)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.testclient import TestClient

from kfloop.audit import AuditStoreConfig
from kfloop.eventlog import EventLogConfig
from kfloop.processes import free_port
from serving.audit.app import create_app as create_audit_sink
from serving.audit.config import AuditSinkConfig
from serving.collector.app import create_app as create_collector
from serving.collector.config import CollectorConfig
from serving.common.modelserver import KfloopRESTServer
from serving.common.names import MODEL_NAME
from serving.common.versions import resolve
from serving.explainer.config import ExplainerConfig
from serving.explainer.engine import ExplanationEngine
from serving.explainer.server import RankerExplainer
from serving.local.router.app import create_app as create_router
from serving.local.router.config import RouterConfig
from serving.local.router.routes import Route, Routes, write_routes
from serving.predictor.config import PredictorAuditConfig, PredictorConfig
from serving.predictor.server import RankerPredictor
from serving.transformer.config import TransformerConfig
from serving.transformer.features import OnlineFeatures
from serving.transformer.server import RankerTransformer
from tests.support import testbed
from tests.unit.test_serving_support import contract_registry

pytestmark = pytest.mark.serving

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
EXPLAIN = f"/v1/models/{MODEL_NAME}:explain"
INFER = f"/v2/models/{MODEL_NAME}/infer"
JSON = {"content-type": "application/json"}
_CODE = re.compile(r"[A-Z][A-Za-z]+")


def one_shape(response: Any, status: int, code: str, *, says: str = "", field: str | None = None) -> dict:
    """The response is `status` with the one error body: `code`, a message containing `says`, and (if `field`)
    a details entry naming that field with a reason."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert {"error", "message"} <= set(body) <= {"error", "message", "details"}, body
    assert _CODE.fullmatch(body["error"]) and body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"] and says in body["message"], body
    details = body.get("details", [])
    assert isinstance(details, list) and all(isinstance(d, dict) for d in details), body
    if field is not None:
        named = [d for d in details if d.get("field") == field]
        assert named and all(isinstance(d.get("reason"), str) and d["reason"] for d in named), body
    return body


def kserve_app(*models: Any) -> FastAPI:
    """A KServe ModelServer's app as our model server builds it (KfloopRESTServer), without uvicorn."""
    repository = ModelRepository()
    for model in models:
        repository.update(model)
    app = FastAPI(default_response_class=ORJSONResponse)  # as KServe's own app
    KfloopRESTServer(app, DataPlane(repository), ModelRepositoryExtension(repository), 0).create_application()
    return app


@contextmanager
def ready(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.02)
        yield client


def kserves_own_errors(client: TestClient) -> None:
    """What KServe and FastAPI raise themselves, before any model code runs."""
    one_shape(client.post("/v1/models/nobody:predict", json={"instances": []}), 404, "NotFound", says="nobody")
    one_shape(client.post(PREDICT, content=b"{not json", headers=JSON), 400, "MalformedRequest", says="format")
    invalid = client.post(INFER, json={"inputs": "not a list"})  # KServe's body is InferenceRequest or bytes
    one_shape(invalid, 422, "InvalidInput", says="valid list", field="body.InferenceRequest.inputs")
    one_shape(client.get("/v1/no-such-route"), 404, "NotFound")
    for path in ("/v2/models/nobody", "/v2/models/nobody/ready", "/v1/models/nobody"):
        one_shape(client.get(path), 404, "NotFound", says="nobody")
    one_shape(client.post("/v2/models/nobody/infer", json={"inputs": []}), 404, "NotFound", says="nobody")
    # versions are not addressed here, by path or by KServe's query parameter (KServe answers 501 for both)
    versioned = [f"/v2/models/{MODEL_NAME}/versions/1", f"/v2/models/{MODEL_NAME}/versions/1/ready"]
    for path in [
        *versioned,
        f"/v2/models/{MODEL_NAME}?model_version=1",
        f"/v2/models/{MODEL_NAME}/ready?model_version=1",
    ]:
        one_shape(client.get(path), 404, "NotFound", says="versions are not addressed")
    for path in (f"/v2/models/{MODEL_NAME}/versions/1/infer", f"{INFER}?model_version=1"):
        one_shape(client.post(path, json={"inputs": []}), 404, "NotFound", says="versions are not addressed")


@pytest.fixture(scope="module")
def registry():
    return contract_registry()


def test_the_collector(log_config: EventLogConfig):
    config = CollectorConfig(event_log=log_config, writer_id="error-shape", max_batch_events=2)
    with ready(create_collector(config)) as client:
        one_shape(client.post("/v1/events", json={"events": 5}), 400, "MalformedRequest", says='"events"')
        rating = {"event_id": "e", "type": "rating", "user_id": "u", "item_id": "1", "rating": 9}
        body = one_shape(client.post("/v1/events", json=rating), 422, "InvalidInput", says="rejected")
        assert "rating" in [e["field"] for e in body["details"][0]["errors"]]
        one_shape(client.post("/v1/events", json=[rating] * 3), 413, "PayloadTooLarge", field="events")
        one_shape(client.get("/v1/no-such-route"), 404, "NotFound")


def test_the_audit_sink(tmp_path):
    config = AuditSinkConfig(store=AuditStoreConfig(url=f"sqlite:///{tmp_path / 'audit.db'}"))
    with ready(create_audit_sink(config)) as client:
        one_shape(client.post("/v1/decisions", json={"records": 5}), 400, "MalformedRequest", field="records")
        one_shape(client.post("/v1/decisions", json={"records": []}), 422, "InvalidInput", field="records")
        one_shape(client.get("/v1/decisions", params={"limit": "x"}), 422, "InvalidInput", field="query.limit")


def test_the_router(tmp_path):
    routes = tmp_path / "routes.json"
    write_routes(routes, Routes(stable=Route(urls=(f"http://127.0.0.1:{free_port()}",), version="v1")))
    with ready(create_router(RouterConfig(routes_file=routes, max_body_bytes=1024))) as client:
        one_shape(client.post(PREDICT, content=b"{not json", headers=JSON), 400, "MalformedRequest", says="JSON")
        one_shape(client.post(INFER, json=[1]), 400, "MalformedRequest", says="JSON object")
        one_shape(client.post(PREDICT, json={"pad": "x" * 2000}), 413, "PayloadTooLarge")
        one_shape(client.post(PREDICT, json={"instances": []}), 503, "NotReady", says="stable predictor")
        one_shape(client.get("/v1/no-such-route"), 404, "NotFound")


def test_the_transformer(tmp_path):
    features_config, _ = testbed.build_features(tmp_path, n_items=12)
    features = OnlineFeatures(features_config)
    unreachable = f"http://127.0.0.1:{free_port()}"
    model = RankerTransformer(TransformerConfig(features=features_config), features, unreachable)
    try:
        with TestClient(kserve_app(model), raise_server_exceptions=False) as client:
            bad = {"instances": [{"user_id": "jane@example.com"}]}
            one_shape(client.post(PREDICT, json=bad), 400, "MalformedRequest", field="instances[0].user_id")
            one_shape(client.post(EXPLAIN, json={"instances": []}), 400, "MalformedRequest", says="instances")
            answer = client.post(PREDICT, json={"instances": [{"user_id": "u-1"}]})
            one_shape(answer, 503, "NotReady", says="predictor unreachable")
            kserves_own_errors(client)
    finally:
        features.close()


def test_the_predictor(registry):
    uri, versions, root = registry
    config = PredictorConfig(registry_uri=uri, cache_dir=root / "cache", audit=PredictorAuditConfig(enabled=False))
    model = RankerPredictor(config, resolve(uri, versions[0], None, config.cache_dir))
    with TestClient(kserve_app(model), raise_server_exceptions=False) as client:
        # still loading: KServe's own readiness check answers, in our shape
        one_shape(client.post(PREDICT, json={"instances": []}), 503, "NotReady", says="not ready")
        model.load()
        bad = {"instances": [{"user_id": "u", "k": 0}]}
        one_shape(client.post(PREDICT, json=bad), 400, "MalformedRequest", field="instances[0].k")
        variant = {"x-kfloop-variant": "no spaces allowed"}
        one_shape(client.post(PREDICT, json=bad, headers=variant), 400, "MalformedRequest", says="x-kfloop-variant")
        v2 = {"inputs": [{"name": "k", "shape": [1], "datatype": "INT32", "data": [2]}]}
        one_shape(client.post(INFER, json=v2), 400, "MalformedRequest", says="user_id")
        kserves_own_errors(client)
    model.stop()


def test_the_explainer(registry):
    uri, _, root = registry
    config = ExplainerConfig(registry_uri=uri, cache_dir=root / "cache")
    model = RankerExplainer(config, ExplanationEngine(config))
    model.warm_up()
    with TestClient(kserve_app(model), raise_server_exceptions=False) as client:
        missing = {"instances": [{"user_id": "u"}]}
        one_shape(client.post(EXPLAIN, json=missing), 400, "MalformedRequest", says="`inputs`")
        unknown = {"instances": [{"model_version": "v-none", "inputs": {"candidates": ["1"], "k": 1}}]}
        one_shape(client.post(EXPLAIN, json=unknown), 404, "NotFound", says="not in the registry")
        one_shape(client.post(PREDICT, json={"instances": []}), 400, "MalformedRequest", says=":explain")
        kserves_own_errors(client)

"""schemathesis against the local router's own OpenAPI document (its app in process, as served, FastPath in front),
with real predictors behind it: two contract model versions, stable and a 50% canary, each a KServe model server
app on loopback (the router speaks HTTP to its predictors). Every check on every operation (tests/support/fuzz.py),
zero failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
pytest.importorskip("schemathesis")

import uvicorn
from schemathesis.python.asgi import shutdown_lifespans

from kfloop.processes import free_port
from serving.common.names import MODEL_NAME
from serving.local.router.app import create_app
from serving.local.router.config import RouterConfig
from serving.local.router.routes import CanaryRoute, Route, Routes, write_routes
from serving.predictor.config import PolicyConfig
from tests.support.fuzz import documented_operations, fuzz, ready_schema
from tests.unit.test_error_shape import kserve_app
from tests.unit.test_serving_support import recording_predictor

pytestmark = pytest.mark.serving

OPERATIONS = [
    ("POST", "/v1/models/{model_name}:predict"),
    ("POST", "/v2/models/{model_name}/infer"),
    ("GET", "/v1/models/{model_name}"),
    ("GET", "/v2/models/{model_name}"),
    ("GET", "/v2/models/{model_name}/ready"),
    ("GET", "/v2/health/ready"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/routes"),
    ("GET", "/metrics"),
]
FEATURES_UNSTATED = {
    400: "the predictors' requests carry the model version's features (names and types from its signature), which "
    "the document (the predictor's bodies) does not enumerate: a valid-shaped request without them is refused by "
    "the predictor, naming the feature"
}
ANY_NAME = {
    404: "the router serves whatever models its predictors serve: it cannot name them in its document, so a "
    "generated model name is a string, and one its predictors do not serve is their 404"
}


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` on a loopback port (uvicorn in a thread): a predictor as the router reaches one."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the predictor never started"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def predictors(tmp_path_factory) -> Iterator[Routes]:
    """Stable (the contract's first version) and a 50% canary (its second), each a model server on loopback."""
    spool = Path(tmp_path_factory.mktemp("spool"))
    models = [recording_predictor(spool / str(index), PolicyConfig(), version_index=index) for index in (0, 1)]
    try:
        with served(kserve_app(models[0])) as stable, served(kserve_app(models[1])) as canary:
            yield Routes(
                stable=Route(urls=(stable,), version=models[0].version),
                canary=CanaryRoute(urls=(canary,), version=models[1].version, percent=50),
            )
    finally:
        for model in models:
            model.stop()


@pytest.fixture
def api_schema(tmp_path, predictors) -> Iterator[Any]:
    """A router of its own per test (schemathesis's pytest plugin ends an app's lifespan after each test)."""
    write_routes(tmp_path / "routes.json", predictors)
    try:
        yield ready_schema(create_app(RouterConfig(routes_file=tmp_path / "routes.json", seed=7)))
    finally:
        shutdown_lifespans()


def test_every_operation_of_the_document_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_check_passes_on_every_operation(api_schema, method, path):
    refused = ANY_NAME if "{model_name}" in path else {}
    if method == "POST":
        refused = refused | FEATURES_UNSTATED
    report = fuzz(api_schema, method, path, max_examples=15, valid_but_refused=refused or None)
    assert report.cases > 0


def test_binary_tensors_pass_through_the_router_both_ways(tmp_path, predictors):
    """The binary tensor extension as tritonclient sends and reads it: the router forwards the body and its
    Inference-Header-Content-Length, and passes the binary answer back with its own."""
    pytest.importorskip("tritonclient.http", reason="tritonclient (dev group) is needed")
    from starlette.testclient import TestClient

    from tests.unit.test_serving_oip import featured_json, post_binary

    write_routes(tmp_path / "routes.json", predictors)
    router = create_app(RouterConfig(routes_file=tmp_path / "routes.json", seed=7))
    with TestClient(router, raise_server_exceptions=False) as client:
        body = featured_json("req-routed")
        as_json = client.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
        assert as_json.status_code == 200, as_json.text
        answer = post_binary(client, body).get_response()
    assert answer["id"] == "req-routed"
    assert answer["model_version"] in (predictors.stable.version, predictors.canary.version)
    assert all(output["parameters"]["binary_data_size"] > 0 for output in answer["outputs"])

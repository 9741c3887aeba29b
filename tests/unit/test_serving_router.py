"""The router: per-request split by the canary share, the variant header, fallback to stable when the canary
errors or is down (counted), bad input 400, routes re-read when the file changes.

The predictors here are small HTTP stand-ins on loopback (the router's own behaviour is under test; the real
predictors behind a real router are in tests/integration/test_serving_stack.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from kfloop.processes import free_port
from serving.local.router.app import create_app
from serving.local.router.config import RouterConfig
from serving.local.router.routes import CanaryRoute, Route, Routes, write_routes
from tests.unit.serving_junk import json_junk

pytestmark = pytest.mark.serving

PREDICT = "/v1/models/kfloop-ranker:predict"


class FakePredictor(ThreadingHTTPServer):
    """Answers with its name and the variant header it was sent, or with `status`."""

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.status = 200
        self.delay_s = 0.0
        self.seen: list[str] = []
        self.experiments: list[str | None] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakePredictor
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one send per answer: headers and body apart would meet Nagle's 40 ms delayed ACK

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        variant = self.headers.get("x-kfloop-variant", "")
        self.server.seen.append(variant)
        self.server.experiments.append(self.headers.get("x-kfloop-experiment"))
        time.sleep(self.server.delay_s)
        self._reply(self.server.status, {"answered_by": self.server.name, "variant": variant})

    def do_GET(self) -> None:
        self._reply(200, {"name": "kfloop-ranker", "ready": True, "by": self.server.name})


@pytest.fixture
def predictors():
    servers = FakePredictor("stable"), FakePredictor("canary")
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def client_for(tmp_path: Path, routes: Routes, **config: Any) -> TestClient:
    path = tmp_path / "routes.json"
    write_routes(path, routes)
    settings = {"routes_file": path, "reload_interval_s": 0.05, "seed": 3, **config}
    return TestClient(create_app(RouterConfig(**settings)))


def split_routes(stable: FakePredictor, canary_url: str, percent: int) -> Routes:
    return Routes(
        stable=Route(urls=(stable.url,), version="v-stable"),
        canary=CanaryRoute(urls=(canary_url,), version="v-canary", percent=percent),
    )


def test_each_request_goes_to_the_canary_with_its_share_and_says_which_variant(tmp_path, predictors):
    stable, canary = predictors
    n = 600
    with client_for(tmp_path, split_routes(stable, canary.url, 30)) as client:
        answers = [client.post(PREDICT, json={"instances": [{"user_id": "u"}]}).json() for _ in range(n)]
    to_canary = sum(a["answered_by"] == "canary" for a in answers)
    assert abs(to_canary / n - 0.3) <= 4.5 * np.sqrt(0.3 * 0.7 / n)
    assert all(a["variant"] == a["answered_by"] for a in answers)
    assert set(stable.seen) == {"stable"} and set(canary.seen) == {"canary"}


def test_a_failing_canary_is_retried_on_stable_and_counted(tmp_path, predictors):
    stable, canary = predictors
    canary.status = 500
    with client_for(tmp_path, split_routes(stable, canary.url, 100)) as client:
        responses = [client.post(PREDICT, json={"instances": []}) for _ in range(5)]
        metrics = client.get("/metrics").text
    assert all(r.status_code == 200 and r.json()["answered_by"] == "stable" for r in responses)
    assert len(canary.seen) == 5
    assert 'kfloop_router_canary_fallbacks_total{reason="status_500"} 5.0' in metrics


def test_a_canary_that_is_down_is_retried_on_stable(tmp_path, predictors):
    stable, _ = predictors
    nobody = f"http://127.0.0.1:{free_port()}"
    with client_for(tmp_path, split_routes(stable, nobody, 100)) as client:
        response = client.post(PREDICT, json={"instances": []})
        metrics = client.get("/metrics").text
    assert response.status_code == 200 and response.json()["answered_by"] == "stable"
    assert 'kfloop_router_canary_fallbacks_total{reason="unreachable"} 1.0' in metrics


def test_a_client_error_from_the_canary_is_not_retried(tmp_path, predictors):
    stable, canary = predictors
    canary.status = 400
    with client_for(tmp_path, split_routes(stable, canary.url, 100)) as client:
        response = client.post(PREDICT, json={"instances": []})
    assert response.status_code == 400 and stable.seen == []


def test_bad_input_is_400_with_the_reason_and_nothing_is_forwarded(tmp_path, predictors):
    stable, canary = predictors
    with client_for(tmp_path, split_routes(stable, canary.url, 50), max_body_bytes=2048) as client:
        not_json = client.post(PREDICT, content=b"{not json", headers={"content-type": "application/json"})
        a_list = client.post(PREDICT, json=[1, 2])
        too_big = client.post(PREDICT, json={"instances": ["x" * 4096]})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
    assert a_list.status_code == 400 and a_list.json() == {
        "error": "MalformedRequest",
        "message": "the body must be a JSON object",
    }
    assert too_big.status_code == 413 and too_big.json()["error"] == "PayloadTooLarge"
    assert stable.seen == [] and canary.seen == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=64) | json_junk.map(lambda v: json.dumps(v).encode()),
    variant=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
def test_no_body_or_variant_header_crashes_the_router(tmp_path, predictors, body, variant):
    stable, canary = predictors
    with client_for(tmp_path, split_routes(stable, canary.url, 50), max_body_bytes=2048) as client:
        response = client.post(PREDICT, content=body, headers={"x-kfloop-variant": variant})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"] == "MalformedRequest" and response.json()["message"]


def test_without_a_stable_route_the_router_is_not_ready(tmp_path):
    with client_for(tmp_path, Routes()) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post(PREDICT, json={"instances": []})
    assert response.status_code == 503 and "no stable predictor" in response.json()["message"]


def test_a_changed_routes_file_is_picked_up(tmp_path, predictors):
    stable, canary = predictors
    with client_for(tmp_path, Routes(stable=Route(urls=(stable.url,), version="v1"))) as client:
        assert client.post(PREDICT, json={}).json()["answered_by"] == "stable"
        write_routes(tmp_path / "routes.json", Routes(stable=Route(urls=(canary.url,), version="v2")))
        deadline = time.monotonic() + 5
        while client.get("/v1/routes").json()["stable"]["version"] != "v2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post(PREDICT, json={}).json()["answered_by"] == "canary"
        assert client.get("/v2/models/kfloop-ranker/ready").json()["by"] == "canary"


def test_the_replicas_of_a_version_take_turns_when_idle(tmp_path, predictors):
    first, second = predictors
    with client_for(tmp_path, Routes(stable=Route(urls=(first.url, second.url), version="v1"))) as client:
        answers = [client.post(PREDICT, json={}).json()["answered_by"] for _ in range(10)]
    assert Counter(answers) == {"stable": 5, "canary": 5}  # the fake predictors' names, here two replicas


def test_a_busy_replica_gets_fewer_requests(tmp_path, predictors):
    slow, quick = predictors
    slow.delay_s = 0.3
    routes = Routes(stable=Route(urls=(slow.url, quick.url), version="v1"))
    with client_for(tmp_path, routes) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post(PREDICT, json={}).json()["answered_by"], range(40)))
    by = Counter(answers)
    assert sum(by.values()) == 40 and by["stable"] < by["canary"] / 2  # "stable" is the slow one here


def test_a_replica_that_refuses_connections_is_passed_over(tmp_path, predictors):
    stable, _ = predictors
    nobody = f"http://127.0.0.1:{free_port()}"
    with client_for(tmp_path, Routes(stable=Route(urls=(nobody, stable.url), version="v1"))) as client:
        answers = [client.post(PREDICT, json={}) for _ in range(6)]
        ready = client.get("/v2/models/kfloop-ranker/ready")
        metrics = client.get("/metrics").text
    assert all(a.status_code == 200 and a.json()["answered_by"] == "stable" for a in answers)
    assert ready.status_code == 200
    assert 'kfloop_router_requests_total{status="200",variant="stable"} 6.0' in metrics

"""The local router's `kfloop_ranking_requests_total{role="router"}`: every attempt at a predictor, by the version
and variant it was routed to and the status it ended with; a canary that refuses connections counts as 502, one
that does not answer in time as 504, each also retried on stable (counted there)."""

from __future__ import annotations

import pytest

from kfloop.processes import free_port
from tests.support.joiner import metric
from tests.unit.test_serving_router import PREDICT, FakePredictor, client_for, predictors, split_routes

pytestmark = pytest.mark.serving
__all__ = ["predictors"]  # the fixture, used by name


def rankings(text: str, version: str, variant: str, code: str) -> float:
    labels = {"role": "router", "model_version": version, "variant": variant, "code": code}
    return metric(text, "kfloop_ranking_requests_total", **labels)


def test_each_answer_is_counted_by_the_version_and_variant_routed_to(tmp_path, predictors):
    stable, canary = predictors
    with client_for(tmp_path, split_routes(stable, canary.url, 30)) as client:
        for _ in range(200):
            assert client.post(PREDICT, json={"instances": []}).status_code == 200
        canary.status = 503
        for _ in range(50):
            assert client.post(PREDICT, json={"instances": []}).status_code == 200  # retried on stable
        text = client.get("/metrics").text
    assert 0 < len(canary.seen) < 250
    canary_ok = rankings(text, "v-canary", "canary", "200")
    assert canary_ok + rankings(text, "v-canary", "canary", "503") == len(canary.seen)
    assert rankings(text, "v-stable", "stable", "200") == len(stable.seen) == 250 - canary_ok
    assert rankings(text, "v-canary", "stable", "200") == 0 and rankings(text, "v-stable", "canary", "200") == 0


def test_a_canary_that_refuses_connections_counts_as_502(tmp_path, predictors):
    stable, _ = predictors
    nobody = f"http://127.0.0.1:{free_port()}"
    with client_for(tmp_path, split_routes(stable, nobody, 100)) as client:
        for _ in range(4):
            assert client.post(PREDICT, json={"instances": []}).json()["answered_by"] == "stable"
        text = client.get("/metrics").text
    assert rankings(text, "v-canary", "canary", "502") == 4
    assert rankings(text, "v-stable", "stable", "200") == 4


def test_a_canary_that_does_not_answer_in_time_counts_as_504(tmp_path, predictors):
    stable, _ = predictors
    slow = FakePredictor("slow canary")
    slow.delay_s = 1.0
    try:
        with client_for(tmp_path, split_routes(stable, slow.url, 100), request_timeout_s=0.2) as client:
            assert client.post(PREDICT, json={"instances": []}).json()["answered_by"] == "stable"
            text = client.get("/metrics").text
    finally:
        slow.shutdown()
        slow.server_close()
    assert rankings(text, "v-canary", "canary", "504") == 1
    assert rankings(text, "v-stable", "stable", "200") == 1

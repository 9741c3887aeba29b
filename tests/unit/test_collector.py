"""The collector's native endpoint, limits, errors and operational endpoints, against a real log in tmp."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfloop.eventlog import EventLogConfig, read_events
from kfloop.events import event_json_schema
from serving.collector.app import create_app
from serving.collector.config import CollectorConfig, CorsConfig

pytestmark = pytest.mark.serving

ORIGIN = "https://shop.example"


@pytest.fixture
def config(log_config: EventLogConfig) -> CollectorConfig:
    return CollectorConfig(
        event_log=log_config,
        writer_id="collector-test",
        max_body_bytes=64 * 1024,
        max_batch_events=50,
        cors=CorsConfig(allow_origins=[ORIGIN]),
    )


@contextmanager
def running(config: CollectorConfig) -> Iterator[TestClient]:
    """A collector whose log is open; leaving the block closes (seals) the log."""
    with TestClient(create_app(config)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "collector never became ready"
            time.sleep(0.02)
        yield client


def event(event_id: str, **fields) -> dict:
    return {
        "event_id": event_id,
        "type": "click",
        "user_id": "u-1",
        "item_id": "item-7",
        "ts": "2026-11-23T10:00:00Z",
        "consent": {"personalization": True},
        **fields,
    }


def stored_ids(config: CollectorConfig) -> list[str]:
    return sorted(read_events(config.event_log.log_uri, columns=["event_id"]).column("event_id").to_pylist())


def metric_value(client: TestClient, sample: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_single_event_is_durable_once_acknowledged(config):
    with running(config) as client:
        response = client.post("/v1/events", json=event("e-1"))
    assert response.status_code == 200
    assert response.json() == {
        "results": [{"index": 0, "event_id": "e-1", "status": "accepted"}],
        "accepted": 1,
        "duplicate": 0,
        "dropped_consent": 0,
        "rejected": 0,
    }
    table = read_events(config.event_log.log_uri)
    assert table.column("event_id").to_pylist() == ["e-1"]
    assert table.column("source").to_pylist() == ["api"]


def test_a_bad_event_in_a_batch_does_not_lose_the_good_ones(config):
    batch = [event("good-1"), event("bad-1", rating=5), "not an event", event("good-2", type="rating", rating=4)]
    with running(config) as client:
        response = client.post("/v1/events", json={"events": batch})
    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected", "accepted"]
    assert body["results"][1]["event_id"] == "bad-1"
    assert body["results"][1]["errors"] == [{"field": "rating", "reason": "Extra inputs are not permitted"}]
    assert body["results"][2]["errors"][0]["field"] == "(event)"
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert stored_ids(config) == ["good-1", "good-2"]


def test_the_same_event_id_is_stored_once(config):
    with running(config) as client:
        first = client.post("/v1/events", json=event("dup-1")).json()
        again = client.post("/v1/events", json=[event("dup-1"), event("dup-2"), event("dup-2")]).json()
    assert first["results"][0]["status"] == "accepted"
    assert [r["status"] for r in again["results"]] == ["duplicate", "accepted", "duplicate"]
    assert stored_ids(config) == ["dup-1", "dup-2"]


def test_events_without_consent_are_dropped_and_counted(config):
    with running(config) as client:
        response = client.post("/v1/events", json=[event("no-1", consent={"personalization": False}), event("yes-1")])
        dropped = metric_value(client, 'kfloop_collector_dropped_consent_total{source="api"}')
        by_status = metric_value(client, 'kfloop_collector_events_total{source="api",status="dropped_consent"}')
    assert [r["status"] for r in response.json()["results"]] == ["dropped_consent", "accepted"]
    assert dropped == 1.0 and by_status == 1.0
    assert stored_ids(config) == ["yes-1"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"x": NaN}', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        (b'"an event"', "got a JSON string"),
        (b"42", "got a JSON number"),
        (b'{"events": {"a": 1}}', '"events" must be a JSON array'),
        (b'{"events": [], "extra": 1}', "unexpected key(s): extra"),
        (b"[]", "no events"),
    ],
)
def test_a_body_that_is_not_an_accepted_shape_is_a_400_saying_why(config, body, says):
    with running(config) as client:
        response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "MalformedRequest"
    assert says in response.json()["message"]


def test_every_event_rejected_is_a_422_naming_each_field(config):
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    batch = [event("e-1", ts=future), event("e-2", type="rating", rating=9), event("e-3", email="a@b.example")]
    with running(config) as client:
        response = client.post("/v1/events", json=batch)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "InvalidInput"
    fields = [[e["field"] for e in result["errors"]] for result in body["details"]]
    assert fields == [["ts"], ["rating"], ["email"]]
    assert "in the future" in body["details"][0]["errors"][0]["reason"]
    assert stored_ids(config) == []


def test_a_timestamp_outside_the_years_datetime_holds_in_utc_is_a_422_naming_ts(config):
    batch = [event("e-1", ts="0001-01-01T00:00:00+01:00"), event("e-2", ts="9999-12-31T23:30:00-01:00")]
    with running(config) as client:
        response = client.post("/v1/events", json=batch)
    assert response.status_code == 422
    reasons = [(e["field"], e["reason"]) for result in response.json()["details"] for e in result["errors"]]
    assert [field for field, _ in reasons] == ["ts", "ts"]
    assert all("outside the years 1 to 9999" in reason for _, reason in reasons), reasons
    assert stored_ids(config) == []


def test_an_oversized_body_is_a_413_by_its_declared_length(config):
    big = json.dumps([event(f"e-{i}") for i in range(40)] + [{"pad": "x" * 70_000}]).encode()
    with running(config) as client:
        response = client.post("/v1/events", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["details"] == [
        {"field": "(body)", "reason": f"larger than {64 * 1024} bytes", "limit_bytes": 64 * 1024}
    ]


def test_an_oversized_chunked_body_is_a_413_by_the_bytes_read(config):
    def chunks() -> Iterator[bytes]:
        yield b"["
        for i in range(2000):
            yield json.dumps(event(f"e-{i}")).encode() + b","
        yield b"1]"

    with running(config) as client:
        chunked = client.post("/v1/events", content=chunks())
        lying = client.post("/v1/events", content=chunks(), headers={"content-length": "100"})
    assert chunked.status_code == 413
    assert lying.status_code == 413
    assert stored_ids(config) == []


def test_too_many_events_in_one_batch_is_a_413(config):
    with running(config) as client:
        response = client.post("/v1/events", json=[event(f"e-{i}") for i in range(51)])
    assert response.status_code == 413
    assert "limit is 50" in response.json()["message"]


def test_gzip_bodies_are_accepted_and_bounded_after_decompression(config):
    good = gzip.compress(json.dumps([event("gz-1"), event("gz-2")]).encode())
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    with running(config) as client:
        accepted = client.post("/v1/events", content=good, headers=headers)
        too_big = client.post("/v1/events", content=bomb, headers=headers)
        broken = client.post("/v1/events", content=good[:-12], headers=headers)
        not_gzip = client.post("/v1/events", content=b"plain", headers=headers)
        brotli = client.post("/v1/events", content=good, headers={"content-encoding": "br"})
    assert len(bomb) < 64 * 1024
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 2
    assert too_big.status_code == 413
    assert broken.status_code == 400 and "truncated" in broken.json()["message"]
    assert not_gzip.status_code == 400 and "gzip" in not_gzip.json()["message"]
    assert brotli.status_code == 400 and "Content-Encoding" in brotli.json()["message"]
    assert stored_ids(config) == ["gz-1", "gz-2"]


def test_events_are_refused_with_503_until_the_log_is_open(config):
    client = TestClient(create_app(config))  # no `with`: the lifespan (which opens the log) never ran
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    response = client.post("/v1/events", json=event("e-1"))
    assert response.status_code == 503
    assert response.json()["error"] == "NotReady"


def test_health_schema_and_openapi(config):
    with running(config) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/v1/schema").json() == event_json_schema()
        spec = client.get("/openapi.json").json()
    events_body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/FeedbackEvent"} in events_body["oneOf"]
    assert "FeedbackEvent" in spec["components"]["schemas"]
    assert "ClickEvent" in spec["components"]["schemas"]
    assert spec["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentBatch"
    }
    for path in ("/healthz", "/readyz", "/metrics", "/v1/schema", "/v1/track", "/v1/identify", "/v1/page"):
        assert path in spec["paths"]


def test_metrics_expose_latency_and_rejections(config):
    with running(config) as client:
        client.post("/v1/events", json=[event("m-1"), event("m-2", position=0)])
        text = client.get("/metrics").text
    assert 'kfloop_collector_events_total{source="api",status="accepted"} 1.0' in text
    assert 'kfloop_collector_rejected_events_total{reason="greater_than_equal",source="api"} 1.0' in text
    assert "kfloop_collector_durable_write_seconds_count 1.0" in text
    assert 'kfloop_collector_request_seconds_count{method="POST",route="/v1/events",status="200"} 1.0' in text
    assert "kfloop_eventlog_durable_write_seconds_bucket" in text  # the log's own metrics ride along


def test_cors_preflight_allows_only_the_configured_origins(config):
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    with running(config) as client:
        allowed = client.options("/v1/events", headers={"origin": ORIGIN, **preflight})
        denied = client.options("/v1/events", headers={"origin": "https://evil.example", **preflight})
        simple = client.post("/v1/events", json=event("c-1"), headers={"origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in denied.headers
    assert simple.headers["access-control-allow-origin"] == ORIGIN


def test_unknown_routes_and_methods_answer_in_the_error_shape(config):
    with running(config) as client:
        missing = client.get("/v1/nothing")
        wrong_method = client.get("/v1/events")
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "MethodNotAllowed"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
EVENTISH = st.fixed_dictionaries(
    {"event_id": st.text(max_size=12), "type": st.sampled_from(["click", "rating", "survey", "x"])},
    optional={"user_id": st.text(max_size=12), "ts": st.text(max_size=30), "consent": JSON, "item_id": JSON},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON | EVENTISH | st.lists(EVENTISH, max_size=5))
def test_no_json_body_crashes_the_server(config, body):
    with running(config) as client:
        response = client.post("/v1/events", json=body)
    assert response.status_code in {200, 400, 413, 422}, response.text
    assert isinstance(response.json(), dict)

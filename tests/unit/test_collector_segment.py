"""Segment's HTTP Tracking API on the collector: write keys, mapping, pseudonymization, consent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from kfloop.eventlog import EventLogConfig, read_events, sealed_files
from serving.collector.app import create_app
from serving.collector.config import CollectorConfig, EventMapping, SegmentConfig

pytestmark = pytest.mark.serving

WRITE_KEY = "test-write-key"
PSEUDONYM_KEY = "test-pseudonymization-key-0123456789"
EMAIL = "alice.smith@example.com"


@pytest.fixture
def segment() -> SegmentConfig:
    return SegmentConfig(
        write_keys=[WRITE_KEY],
        pseudonymization_key=PSEUDONYM_KEY,
        track={
            "Product Clicked": EventMapping(type="click"),
            "Product Viewed": EventMapping(type="impression"),
            "Product Liked": EventMapping(type="thumbs", constants={"thumb": "up"}),
            "Order Completed": EventMapping(type="conversion", properties={"value": ["revenue"]}),
        },
        pages={"Product Detail": EventMapping(type="dwell")},
    )


@pytest.fixture
def config(log_config: EventLogConfig, segment: SegmentConfig) -> CollectorConfig:
    return CollectorConfig(event_log=log_config, writer_id="collector-test", segment=segment)


@contextmanager
def running(config: CollectorConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "collector never became ready"
            time.sleep(0.02)
        yield client


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def consent(personalization: bool) -> dict:
    return {"consent": {"categoryPreferences": {"Personalization": personalization, "Advertising": True}}}


def track(message_id: str, event: str = "Product Clicked", **fields) -> dict:
    return {
        "type": "track",
        "event": event,
        "messageId": message_id,
        "userId": EMAIL,
        "timestamp": "2026-11-23T10:00:00.000Z",
        "properties": {"product_id": "sku-42", "position": 3, "name": "Red shoe", "price": 59.0},
        "context": {**consent(True), "traits": {"email": EMAIL, "name": "Alice Smith"}, "ip": "203.0.113.9"},
        **fields,
    }


def pseudonym(namespace: str, raw: str) -> str:
    return hmac.new(PSEUDONYM_KEY.encode(), f"{namespace}:{raw}".encode(), hashlib.sha256).hexdigest()[:32]


def all_stored_strings(config: CollectorConfig) -> list[str]:
    """Every string value in every sealed file, read file by file (not through the deduplicating reader)."""
    values = []
    for path in sealed_files(config.event_log.log_uri):
        for column in pq.read_table(path).columns:
            values += [v for v in column.to_pylist() if isinstance(v, str)]
    return values


def test_a_mapped_track_event_is_stored_pseudonymously_without_personal_data(config):
    with running(config) as client:
        response = client.post("/v1/track", json=track("msg-1"), headers=basic(WRITE_KEY))
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert response.json()["results"] == [{"index": 0, "messageId": "msg-1", "type": "track", "status": "accepted"}]
    row = read_events(config.event_log.log_uri).to_pylist()[0]
    assert row["event_id"] == "msg-1"
    assert (row["type"], row["item_id"], row["position"], row["source"]) == ("click", "sku-42", 3, "segment")
    assert row["user_id"] == pseudonym("user", EMAIL)
    assert row["ts"].isoformat() == "2026-11-23T10:00:00+00:00"
    stored = " ".join(all_stored_strings(config))
    for personal in ("alice", "example.com", "Smith", "203.0.113.9", "Red shoe"):
        assert personal not in stored
    assert not list(config.event_log.wal_dir.rglob("*.wal"))  # nothing personal left in a write-ahead segment


def test_anonymous_ids_are_pseudonymized_apart_from_user_ids(config):
    anonymous = track("msg-anon", userId=None, anonymousId="device-1")
    same_string = track("msg-user", userId="device-1")
    with running(config) as client:
        client.post("/v1/batch", json={"batch": [anonymous, same_string]}, headers=basic(WRITE_KEY))
    rows = {r["event_id"]: r["user_id"] for r in read_events(config.event_log.log_uri).to_pylist()}
    assert rows == {"msg-anon": pseudonym("anon", "device-1"), "msg-user": pseudonym("user", "device-1")}


def test_identify_and_unmapped_messages_are_counted_not_stored(config):
    identify = {"type": "identify", "userId": EMAIL, "traits": {"email": EMAIL}, "messageId": "id-1"}
    unmapped = track("msg-2", event="Checkout Started")
    page = {"type": "page", "name": "Home", "messageId": "pg-1", "userId": EMAIL}
    with running(config) as client:
        response = client.post("/v1/batch", json={"batch": [identify, unmapped, page]}, headers=basic(WRITE_KEY))
        single = client.post("/v1/identify", json=identify, headers=basic(WRITE_KEY))
        text = client.get("/metrics").text
    assert response.status_code == 200 and single.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["ignored", "ignored", "ignored"]
    assert response.json()["ignored"] == 3
    assert 'kfloop_collector_segment_messages_total{mapped="false",type="identify"} 2.0' in text
    assert 'kfloop_collector_segment_messages_total{mapped="false",type="track"} 1.0' in text
    assert 'kfloop_collector_segment_messages_total{mapped="false",type="page"} 1.0' in text
    assert read_events(config.event_log.log_uri).num_rows == 0


def test_write_keys_are_required(config):
    body = track("msg-1")
    with running(config) as client:
        missing = client.post("/v1/track", json=body)
        wrong_header = client.post("/v1/track", json=body, headers=basic("nope"))
        wrong_body = client.post("/v1/track", json={**body, "writeKey": "nope"})
        not_basic = client.post("/v1/track", json=body, headers={"authorization": "Bearer " + WRITE_KEY})
        garbage = client.post("/v1/track", json=body, headers={"authorization": "Basic %%%"})
    for response in (missing, wrong_header, wrong_body, not_basic, garbage):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "Unauthorized"
    assert read_events(config.event_log.log_uri).num_rows == 0


def test_browser_short_forms_with_the_key_in_a_text_plain_body(config):
    body = json.dumps({**track("msg-t"), "writeKey": WRITE_KEY})
    batch = json.dumps({"batch": [track("msg-b1"), track("msg-b2")], "writeKey": WRITE_KEY})
    with running(config) as client:
        single = client.post("/v1/t", content=body, headers={"content-type": "text/plain"})
        batched = client.post("/v1/b", content=batch, headers={"content-type": "text/plain"})
    assert single.status_code == 200 and single.json()["accepted"] == 1
    assert batched.status_code == 200 and batched.json()["accepted"] == 2
    assert sorted(read_events(config.event_log.log_uri).column("event_id").to_pylist()) == [
        "msg-b1",
        "msg-b2",
        "msg-t",
    ]


def test_consent_comes_from_category_preferences_and_defaults_to_none(config):
    declined = track("msg-no", context=consent(False))
    silent = track("msg-silent", context={})
    shared = {"batch": [track("msg-shared", context={})], "context": consent(True)}
    with running(config) as client:
        first = client.post("/v1/batch", json={"batch": [declined, silent]}, headers=basic(WRITE_KEY))
        second = client.post("/v1/batch", json=shared, headers=basic(WRITE_KEY))
    assert [r["status"] for r in first.json()["results"]] == ["dropped_consent", "dropped_consent"]
    assert second.json()["results"][0]["status"] == "accepted"  # the batch's context applies to its messages
    assert read_events(config.event_log.log_uri).column("event_id").to_pylist() == ["msg-shared"]


def test_default_consent_can_be_granted_by_config(config):
    config = config.model_copy(update={"segment": config.segment.model_copy(update={"default_consent": True})})
    with running(config) as client:
        response = client.post("/v1/track", json=track("msg-1", context={}), headers=basic(WRITE_KEY))
    assert response.json()["results"][0]["status"] == "accepted"


def test_an_invalid_message_does_not_fail_the_batch_and_names_segment_fields(config):
    no_item = track("msg-bad", properties={"position": 2})
    bad_position = track("msg-bad-2", event="Product Viewed", properties={"product_id": "p", "position": 0})
    no_user = track("msg-bad-3", userId=None)
    batch = [no_item, track("msg-ok"), bad_position, no_user, "junk", {"type": "explode"}]
    with running(config) as client:
        response = client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted", "rejected", "rejected", "rejected", "rejected"]
    assert results[0]["errors"][0]["field"] == "properties.product_id"
    assert results[2]["errors"][0]["field"] == "properties.position"
    assert results[3]["errors"][0]["field"] == "userId"
    assert results[4]["errors"][0]["field"] == "(message)"
    assert results[5]["errors"][0]["field"] == "type"
    assert read_events(config.event_log.log_uri).column("event_id").to_pylist() == ["msg-ok"]


def test_constants_pages_and_per_event_property_sources(config):
    liked = track("msg-like", event="Product Liked", properties={"product_id": 42})
    order = track("msg-order", event="Order Completed", properties={"product_id": "sku-42", "revenue": 59.0})
    page = {
        "type": "page",
        "name": "Product Detail",
        "messageId": "msg-page",
        "anonymousId": "anon-9",
        "properties": {"item_id": "sku-7", "dwell_ms": 1200, "path": "/p/sku-7"},
        "context": consent(True),
    }
    with running(config) as client:
        response = client.post("/v1/batch", json={"batch": [liked, order, page]}, headers=basic(WRITE_KEY))
    assert response.json()["accepted"] == 3
    rows = {r["event_id"]: r for r in read_events(config.event_log.log_uri).to_pylist()}
    assert (rows["msg-like"]["type"], rows["msg-like"]["thumb"], rows["msg-like"]["item_id"]) == ("thumbs", "up", "42")
    assert (rows["msg-order"]["type"], rows["msg-order"]["value"]) == ("conversion", 59.0)
    assert (rows["msg-page"]["type"], rows["msg-page"]["item_id"], rows["msg-page"]["dwell_ms"]) == (
        "dwell",
        "sku-7",
        1200,
    )


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/track", b"not json", 400),
        ("/v1/track", b"[1, 2]", 400),
        ("/v1/batch", b'{"batch": {"a": 1}}', 400),
        ("/v1/batch", b'{"batch": []}', 400),
        # a write key of another type than the document's string is refused, even beside a good basic auth key
        ("/v1/track", b'{"event": "Product Clicked", "writeKey": 5}', 400),
        ("/v1/batch", b'{"batch": [{"type": "track", "writeKey": {"a": 1}}]}', 400),
        ("/v1/batch", b'{"batch": [{"type": "track"}], "writeKey": ["k"]}', 400),
        ("/v1/batch", json.dumps({"batch": [{"type": "identify"}] * 1001}).encode(), 413),
    ],
)
def test_malformed_segment_bodies(config, path, body, status):
    with running(config) as client:
        response = client.post(path, content=body, headers=basic(WRITE_KEY))
    assert response.status_code == status, response.text


def test_segment_is_closed_when_no_write_key_is_configured(log_config):
    config = CollectorConfig(event_log=log_config, writer_id="collector-test")
    with running(config) as client:
        response = client.post("/v1/track", json=track("msg-1"), headers=basic(WRITE_KEY))
    assert response.status_code == 401
    assert "no Segment write keys" in response.json()["message"]

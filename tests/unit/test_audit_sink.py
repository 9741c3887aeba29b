"""The audit sink over HTTP (in process): batches with per-record results, KServe CloudEvents, queries,
errors that name the field, and 10,000 decisions written through the API, pulled and verified."""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfloop.audit import FORMATS, AuditStoreConfig, verify_file
from kfloop.cli.commands import audit as audit_cli
from serving.audit.app import create_app
from serving.audit.config import AuditSinkConfig
from tests.unit.serving_junk import json_junk
from tests.unit.test_audit_item_contexts import context, referring
from tests.unit.test_audit_support import decision_json

pytestmark = pytest.mark.serving

KSERVE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "5f2c4e1a-1b7e-4d5c-9a51-0b7f0c1d2e3f",
    "ce-source": "http://localhost:9081/",
    "ce-time": "2026-11-23T10:00:00.123456789Z",
    "ce-inferenceservicename": "ranker",
    "ce-namespace": "kfloop",
    "ce-component": "predictor",
    "ce-endpoint": "canary",
    "ce-metadata": '{"X-User-Segment":["a"]}',
    "content-type": "application/json",
}
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


@pytest.fixture
def config(tmp_path) -> AuditSinkConfig:
    return AuditSinkConfig(
        store=AuditStoreConfig(url=f"sqlite:///{tmp_path / 'audit.db'}"),
        max_body_bytes=2 * 1024 * 1024,
        max_batch_records=500,
        max_page_records=1000,
    )


@contextmanager
def running(config: AuditSinkConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "sink never became ready"
            time.sleep(0.02)
        yield client


@pytest.fixture
def client(config) -> Iterator[TestClient]:
    with running(config) as c:
        yield c


def fields_of(response) -> list[str]:
    body = response.json()
    details = body.get("details") or []
    out = []
    for d in details:
        out += [e["field"] for e in d.get("errors", [])] if "errors" in d else [d["field"]]
    return out


# -- the acceptance path through HTTP ----------------------------------------------------------------
def test_ten_thousand_decisions_through_the_api_are_pulled_and_verified(config, tmp_path, capsys):
    with running(config) as client:
        for start in range(0, 10_000, 500):
            response = client.post(
                "/v1/decisions", json={"records": [decision_json(i) for i in range(start, start + 500)]}
            )
            assert response.status_code == 200 and response.json()["accepted"] == 500
        seqs, after = [], 0
        while after is not None:
            page = client.get("/v1/decisions", params={"after_seq": after}).json()
            seqs += [r["seq"] for r in page["records"]]
            after = page["next_after_seq"]
        assert seqs == list(range(1, 10_001))
    for fmt in FORMATS:
        out = tmp_path / f"pull.{fmt}"
        args = argparse.Namespace(
            config=None,
            store_url=config.store.url,
            since="2026-11-23",
            until="2026-11-24",
            model_version=None,
            user=None,
            kind=None,
            format=fmt,
            output=str(out),
        )
        assert audit_cli.pull(args) == 0
        report = verify_file(out)
        assert report.ok and report.records == 10_000, report.summary()
    args = argparse.Namespace(config=None, store_url=config.store.url, file=None, format=None, allow_gaps=False)
    assert audit_cli.verify(args) == 0


# -- POST /v1/decisions -----------------------------------------------------------------------------
def test_each_record_gets_its_own_result(client):
    first = client.post("/v1/decisions", json={"records": [decision_json(0), decision_json(1)]})
    assert first.json()["results"] == [
        {"index": 0, "record_id": "decision:req-000000", "status": "accepted", "seq": 1},
        {"index": 1, "record_id": "decision:req-000001", "status": "accepted", "seq": 2},
    ]
    bad = decision_json(3)
    del bad["model_version"]
    mixed = client.post("/v1/decisions", json=[decision_json(1), bad, decision_json(2, variant="x y")])
    assert mixed.status_code == 200
    results = mixed.json()["results"]
    assert [r["status"] for r in results] == ["duplicate", "rejected", "rejected"]
    assert results[1]["errors"][0]["field"] == "model_version"
    assert results[2]["errors"][0]["field"] == "variant"
    conflict = client.post("/v1/decisions", json=[decision_json(0, model_version="m-other")])
    assert conflict.json()["results"][0]["status"] == "conflict" and conflict.json()["conflict"] == 1


def test_explanations_are_accepted_beside_decisions(client):
    explanation = {
        "kind": "explanation",
        "request_id": "req-000000",
        "ts": "2026-11-23T10:05:00Z",
        "model_version": "m",
        "trigger": "sampled",
        "explainer": "ig-v1",
        "explanation": {"attributions": {"age_days": 0.2}},
        "explanation_id": "e-1",
    }
    response = client.post("/v1/decisions", json={"records": [decision_json(0), explanation]})
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted"]
    got = client.get("/v1/decisions/req-000000").json()["records"]
    assert [r["kind"] for r in got] == ["decision", "explanation"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"not json", 400, None),
        (b'{"records": 5}', 400, "records"),
        (b'{"records": []}', 422, "records"),
        (b'{"records": [7]}', 422, "(record)"),
        (b'[{"request_id": "r", "kind": "verdict"}]', 422, "kind"),
        (b'{"records": [{"request_id": "r", "ts": "2026-11-23T10:00:00Z", "inputs": {"x": NaN}}]}', 400, None),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(client, body, status, field):
    response = client.post("/v1/decisions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if field is not None:
        assert field in fields_of(response)


def test_an_all_rejected_batch_is_422_with_every_field(client):
    record = decision_json(0)
    record["candidates"][0]["propensity"] = 1.5
    record["user_id"] = "jane@example.com"
    response = client.post("/v1/decisions", json={"records": [record]})
    assert response.status_code == 422
    assert sorted(fields_of(response)) == ["candidates.0.propensity", "user_id"]


def test_limits_are_413(client, config):
    too_many = client.post("/v1/decisions", json={"records": [decision_json(i) for i in range(501)]})
    assert too_many.status_code == 413
    huge = client.post(
        "/v1/decisions",
        content=b"[" + b" " * config.max_body_bytes + b"]",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413


# -- POST /v1/cloudevents ---------------------------------------------------------------------------
def test_kserve_request_and_response_events_are_kept_in_the_chain(client):
    request = client.post(
        "/v1/cloudevents", content=b'{"instances": [[1, 2]]}', headers={**KSERVE_HEADERS, "ce-type": REQUEST_TYPE}
    )
    response = client.post(
        "/v1/cloudevents", content=b'{"predictions": [0.7]}', headers={**KSERVE_HEADERS, "ce-type": RESPONSE_TYPE}
    )
    assert request.status_code == response.status_code == 200
    assert (request.json()["seq"], response.json()["seq"]) == (1, 2)
    again = client.post(
        "/v1/cloudevents", content=b'{"instances": [[1, 2]]}', headers={**KSERVE_HEADERS, "ce-type": REQUEST_TYPE}
    )
    assert again.json()["status"] == "duplicate"
    records = client.get(f"/v1/decisions/{KSERVE_HEADERS['ce-id']}").json()["records"]
    assert [r["kind"] for r in records] == ["kserve_request", "kserve_response"]
    logged = records[0]["record"]
    assert logged["body"] == {"instances": [[1, 2]]} and logged["endpoint"] == "canary"
    assert logged["ts"] == "2026-11-23T10:00:00.123456Z" and logged["metadata"] == {"X-User-Segment": ["a"]}
    assert records[0]["variant"] == "canary"


def test_a_non_json_payload_is_kept_as_base64(client):
    headers = {**KSERVE_HEADERS, "ce-type": REQUEST_TYPE, "content-type": "application/octet-stream"}
    response = client.post("/v1/cloudevents", content=b"\x00\x01binary", headers=headers)
    assert response.status_code == 200
    record = client.get(f"/v1/decisions/{KSERVE_HEADERS['ce-id']}").json()["records"][0]["record"]
    assert base64.b64decode(record["body_base64"]) == b"\x00\x01binary"


def test_a_structured_cloudevent_is_accepted(client):
    event = {"specversion": "1.0", "id": "abc-1", "type": RESPONSE_TYPE, "source": "ranker", "data": {"p": [1]}}
    response = client.post(
        "/v1/cloudevents", content=json.dumps(event), headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 200 and response.json()["record_id"].startswith("kserve_response:")


@pytest.mark.parametrize("kind", [[None, None], {"a": 1}, 7])
def test_a_structured_cloudevent_whose_type_is_not_a_string_is_refused(client, kind):
    event = {"specversion": "1.0", "id": "abc-1", "type": kind, "source": "ranker", "data": {}}
    response = client.post(
        "/v1/cloudevents", content=json.dumps(event), headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 422, response.text  # was a 500 for a list: found by schemathesis
    assert response.json()["details"][0]["field"] == "type"


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"ce-id": None}, 400, "ce-id"),
        ({"ce-type": None}, 400, "ce-type"),
        ({"ce-type": "com.example.other"}, 422, "ce-type"),
        ({"ce-specversion": "0.3"}, 422, "ce-specversion"),
        ({"ce-time": "yesterday"}, 422, "ce-time"),
        ({"ce-id": "not an id!"}, 422, "ce-id"),
        ({"ce-endpoint": "can ary"}, 422, "ce-endpoint"),
    ],
)
def test_bad_cloudevents_are_refused_naming_the_header(client, change, status, field):
    headers = {**KSERVE_HEADERS, "ce-type": REQUEST_TYPE, **change}
    headers = {k: v for k, v in headers.items() if v is not None}
    response = client.post("/v1/cloudevents", content=b"{}", headers=headers)
    assert response.status_code == status, response.text
    assert field in fields_of(response)


# -- GET -------------------------------------------------------------------------------------------
def test_queries_filter_and_name_bad_parameters(client):
    client.post("/v1/decisions", json=[decision_json(i) for i in range(100)])
    get = lambda **p: client.get("/v1/decisions", params=p)  # noqa: E731
    assert len(get(since="2026-11-23T10:00:50Z", until="2026-11-23T10:01:00Z").json()["records"]) == 10
    assert {r["model_version"] for r in get(model_version="m-2026-11-22").json()["records"]} == {"m-2026-11-22"}
    assert [r["request_id"] for r in get(user="u-3").json()["records"]] == ["req-000003"]
    assert get(kind="explanation").json()["records"] == []
    first = get(limit=30).json()
    assert len(first["records"]) == 30 and first["next_after_seq"] == 30
    for params, field in [
        ({"since": "soon"}, "since"),
        ({"kind": "verdict"}, "kind"),
        ({"after_seq": -1}, "after_seq"),
    ]:
        response = get(**params)
        assert response.status_code == 422 and any(field in f for f in fields_of(response))
    assert client.get("/v1/decisions/nope").status_code == 404


def test_operational_endpoints(client):
    client.post("/v1/decisions", json=[decision_json(0), {"kind": "decision"}])
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/chain/head").json()["seq"] == 1
    metrics = client.get("/metrics").text
    assert 'kfloop_audit_sink_records_total{kind="decision",status="accepted"} 1.0' in metrics
    assert 'kfloop_audit_sink_records_total{kind="decision",status="rejected"} 1.0' in metrics
    assert "kfloop_audit_sink_chain_head_seq 1.0" in metrics


def test_not_ready_until_the_store_opens(tmp_path):
    config = AuditSinkConfig(store=AuditStoreConfig(url=f"sqlite:///{tmp_path}/missing-dir-is-a-file/x.db"))
    (tmp_path / "missing-dir-is-a-file").write_text("")
    with TestClient(create_app(config)) as client:
        deadline = time.monotonic() + 30
        while "failed to open" not in (ready := client.get("/readyz")).json()["message"]:
            assert ready.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.status_code == 503
        assert client.post("/v1/decisions", json=[decision_json(0)]).status_code == 503


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(json_junk, st.lists(st.fixed_dictionaries({}, optional={**{k: json_junk for k in decision_json(0)}}))))
def test_no_body_crashes_the_sink(client, body):
    response = client.post("/v1/decisions", json=body)
    assert response.status_code in (200, 400, 413, 422), response.text
    events = client.post(
        "/v1/cloudevents", content=json.dumps(body), headers={**KSERVE_HEADERS, "ce-type": REQUEST_TYPE}
    )
    assert events.status_code in (200, 409, 422), events.text


def test_a_page_of_decisions_carries_the_item_contexts_they_refer_to(client):
    """A page is complete on its own: the context a page's decisions name comes with it, whether it lies before
    the page or outside the filter, and only once (not again when the page holds it)."""
    records = [decision_json(0), context(), *(referring(i) for i in range(1, 6))]
    sent = [r if isinstance(r, dict) else r.model_dump(mode="json") for r in records]
    assert {r["status"] for r in client.post("/v1/decisions", json=sent).json()["results"]} == {"accepted"}
    context_id = context().context_id

    first = client.get("/v1/decisions", params={"limit": 3}).json()
    assert [r["kind"] for r in first["records"]] == ["decision", "item_context", "decision"]
    assert first["item_contexts"] == []  # on the page already
    later = client.get("/v1/decisions", params={"after_seq": first["next_after_seq"]}).json()
    assert [r["record"]["inputs"]["item_context"] for r in later["records"]] == [context_id] * 4
    assert [r["record"]["context_id"] for r in later["item_contexts"]] == [context_id]
    by_user = client.get("/v1/decisions", params={"user": decision_json(3)["user_id"]}).json()
    assert [r["request_id"] for r in by_user["records"]] == ["req-000003"]
    assert [r["seq"] for r in by_user["item_contexts"]] == [2]
    whole = client.get("/v1/decisions", params={"user": decision_json(0)["user_id"]}).json()
    assert whole["item_contexts"] == []  # a whole decision names no context

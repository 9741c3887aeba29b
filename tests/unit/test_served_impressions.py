"""Served slates become impression events: derived from the decision record as spooled, with deterministic ids,
none without consent; the collector takes `source: "serving"` only with its serving token; and every reader of
the log prefers the served copy of an event id to a client's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from kfloop.audit.record import ItemContext, record_json
from kfloop.eventlog import DUPLICATE, EventLog, EventLogConfig, read_events
from kfloop.eventlog.copies import preferred_copies
from kfloop.events import parse_event
from kfloop.events.record import EVENT_ARROW_SCHEMA, records_to_table, to_record
from kfloop.features.offline import log_events
from serving.collector.app import create_app
from serving.collector.config import CollectorConfig
from serving.joiner.join import Joiner
from serving.predictor.impressions import impression_id, impressions_of
from tests.unit.test_audit_support import decision

pytestmark = pytest.mark.serving

TOKEN = "a-serving-token-for-tests"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def served(**overrides) -> dict:
    """A decision as the predictor spools it (its JSON), made with these overrides."""
    return record_json(decision(7, **overrides))


def test_a_decision_becomes_one_impression_per_slot_with_its_exact_propensity():
    record = served(consent={"personalization": True, "analytics": True})
    events = impressions_of(record)
    assert [e["event_id"] for e in events] == ["imp-req-000007-1", "imp-req-000007-2", "imp-req-000007-3"]
    for event, slot in zip(events, record["candidates"], strict=True):
        parsed = parse_event(event)  # a valid schema v1 event
        assert (parsed.item_id, parsed.position, parsed.propensity) == (
            slot["item_id"],
            slot["position"],
            slot["propensity"],
        )
        assert parsed.source == "serving" and parsed.type == "impression" and parsed.policy == "epsilon_greedy"
        assert (parsed.request_id, parsed.user_id) == (record["request_id"], record["user_id"])
        assert (parsed.model_version, parsed.variant) == (record["model_version"], record["variant"])
        assert parsed.ts == datetime.fromisoformat(record["ts"])
        assert parsed.consent.personalization and parsed.consent.analytics


def test_no_impression_without_personalization_consent_nor_from_other_records():
    assert impressions_of(served(consent={"personalization": False, "analytics": True})) == []
    context = ItemContext.of({"candidates": ["a"], "items": {}}, T0)
    assert impressions_of(record_json(context)) == []
    # recorded before decisions carried consent: every request was personalized then
    assert len(impressions_of(served())) == 3


def test_the_event_id_fits_the_longest_request_id():
    request_id = "r" * 128
    (event, *_) = impressions_of(served(request_id=request_id))
    assert event["event_id"] == impression_id(request_id, 1) == f"imp-{request_id}-1"
    assert parse_event(event).event_id == event["event_id"]


# -- the collector's serving token ---------------------------------------------------------------------


@contextmanager
def collector(tmp_path: Path, token: str | None) -> Iterator[tuple[TestClient, CollectorConfig]]:
    token_file = None
    if token is not None:
        token_file = tmp_path / "serving-token"
        token_file.write_text(token + "\n")
    log = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"))
    config = CollectorConfig(event_log=log, writer_id="imp-test", serving_token_file=token_file)
    with TestClient(create_app(config)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield client, config


def test_only_a_request_bearing_the_serving_token_may_send_served_events(tmp_path):
    events = [*impressions_of(served()), client_impression("c-1")]
    with collector(tmp_path, TOKEN) as (client, config):
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}):
            refused = client.post("/v1/events", json=events, headers=headers)
            assert refused.status_code == 401, refused.text
            assert {d["index"] for d in refused.json()["details"]} == {0, 1, 2}
        answer = client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and answer.json()["accepted"] == 4
        plain = client.post("/v1/events", json=client_impression("c-2"))  # a client's own events need no token
        assert plain.status_code == 200
    rows = {r["event_id"]: r["source"] for r in read_events(config.event_log.log_uri).to_pylist()}
    assert rows == {"imp-req-000007-1": "serving", "imp-req-000007-2": "serving", "imp-req-000007-3": "serving"} | {
        "c-1": "api",
        "c-2": "api",
    }


def test_a_collector_without_a_serving_token_refuses_served_events_and_says_why(tmp_path):
    with collector(tmp_path, None) as (client, _):
        refused = client.post(
            "/v1/events", json=impressions_of(served())[0], headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert refused.status_code == 403
    assert "no serving token configured (serving_token_file)" in refused.json()["message"]


# -- the served record wins --------------------------------------------------------------------------


def client_impression(event_id: str, **fields) -> dict:
    return {
        "event_id": event_id,
        "type": "impression",
        "user_id": "u-7",
        "item_id": "item-x",
        "position": 1,
        "ts": T0.isoformat(),
        "consent": {"personalization": True},
        **fields,
    }


def row(event: dict, at: datetime, channel: str = "api") -> dict:
    return to_record(parse_event(event), received_at=at, source=channel)


def test_a_served_copy_is_stored_after_a_clients_and_a_clients_after_it_is_a_duplicate(tmp_path):
    (first, second, *_) = impressions_of(served())
    config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"), dedup_lookback_days=3650)
    with EventLog(config, writer_id="w") as log:
        assert log.append([row(client_impression(first["event_id"]), T0)]) == ["accepted"]
        assert log.append([row(first, T0 + timedelta(seconds=1))]) == ["accepted"]  # stored: it will win
        assert log.append([row(second, T0)]) == ["accepted"]
        late = [row(client_impression(second["event_id"]), T0 + timedelta(seconds=2)), row(second, T0)]
        assert log.append(late) == [DUPLICATE, DUPLICATE]
    with EventLog(config, writer_id="w") as log:  # the filter, seeded from the sealed log, knows the same
        assert log.append([row(first, T0), row(client_impression(first["event_id"]), T0)]) == [DUPLICATE] * 2
    kept = read_events(config.log_uri).to_pylist()
    assert [(r["event_id"], r["source"], r["propensity"]) for r in kept] == [
        (second["event_id"], "serving", 0.8),
        (first["event_id"], "serving", 0.8),
    ]


def test_preferred_copies_keep_the_served_one_else_the_first_arrival():
    a_client = row(client_impression("e-a"), T0)
    a_served = row(client_impression("e-a", source="serving", propensity=0.5), T0 + timedelta(seconds=5))
    b_first = row(client_impression("e-b"), T0 + timedelta(seconds=1))
    b_again = row(client_impression("e-b", item_id="item-y"), T0 + timedelta(seconds=2), channel="segment")
    table = preferred_copies(records_to_table([b_again, a_served, b_first, a_client]))
    assert [(r["event_id"], r["source"], r["item_id"]) for r in table.to_pylist()] == [
        ("e-b", "api", "item-x"),
        ("e-a", "serving", "item-x"),
    ]
    assert preferred_copies(EVENT_ARROW_SCHEMA.empty_table()).num_rows == 0
    assert isinstance(table, pa.Table)


def test_the_offline_reader_prefers_a_served_copy_still_in_the_write_ahead_log(tmp_path):
    config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "log"))
    with EventLog(config, writer_id="w") as log:
        log.append([row(client_impression("imp-r-1", item_id="item-x"), datetime.now(UTC))])
    log = EventLog(config.model_copy(update={"segment_max_age_s": 3600}), writer_id="w2").open()
    try:
        log.append([row(client_impression("imp-r-1", source="serving", propensity=0.25), datetime.now(UTC))])
        (event,) = log_events(config)  # sealed: the client's copy; write-ahead: the served one
    finally:
        log.close()
    assert event["source"] == "serving"


def test_the_joiner_takes_the_labels_of_a_served_copy_that_comes_after_a_clients():
    joiner = Joiner(window_us=60_000_000, remember_us=600_000_000)
    at = int(T0.timestamp() * 1e6)

    def joined(event: dict, arrived_s: float) -> None:
        record = row(event, T0 + timedelta(seconds=arrived_s))
        joiner.ingest({**record, "ts": at, "received_at": at + int(arrived_s * 1e6)})

    joined(client_impression("imp-r-1", request_id="r"), 0)
    joined(client_impression("imp-r-1", request_id="r", source="serving", model_version="v1", variant="canary"), 1)
    joined(client_impression("imp-r-1", request_id="r"), 2)  # the client's again: a duplicate
    joined({**client_impression("c-1", request_id="r"), "type": "click"}, 3)
    counts = joiner.counts
    assert +counts.impressions == {("v1", "canary"): 1}
    assert counts.attributed == {("v1", "canary", "click"): 1} and counts.duplicates == {"impression": 1}

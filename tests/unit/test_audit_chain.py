"""Audit records, their canonical form, and the hash chain's arithmetic."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kfloop.audit import GENESIS, RECORD_TAGS, Explanation, canonical_json, parse_record, record_id_of
from kfloop.audit.chain import entry_bytes, entry_bytes_of_text, link_hash
from kfloop.audit.record import KServeMessage, index_of, record_json
from kfloop.errors import field_errors
from tests.unit.test_audit_support import decision, decision_json


def errors_of(data: dict) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        parse_record(data)
    return field_errors(info.value, union_tags=RECORD_TAGS)


def test_canonical_json_is_sorted_compact_ascii():
    assert canonical_json({"b": 1, "a": {"d": [1, 2.5], "c": "é"}}) == b'{"a":{"c":"\\u00e9","d":[1,2.5]},"b":1}'


def test_timestamps_are_stored_in_utc_with_fixed_width():
    data = record_json(decision(0, ts="2026-11-23T12:00:00+02:00"))
    assert data["ts"] == "2026-11-23T10:00:00.000000Z"
    assert data["kind"] == "decision"  # the default kind of /v1/decisions


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_version": None}, "model_version"),
        ({"user_id": "someone@example.com"}, "user_id"),
        ({"ts": "2026-11-23T10:00:00"}, "ts"),
        ({"inputs": {"x": float("nan")}}, "inputs"),
        ({"policy": {"name": "eg", "epsilon": 2}}, "policy.epsilon"),
        ({"surprise": 1}, "surprise"),
        ({"kind": "verdict"}, "kind"),
    ],
)
def test_invalid_decisions_name_the_field(change, field):
    data = {k: v for k, v in {**decision_json(1), **change}.items() if v is not None}
    assert field in [e["field"] for e in errors_of(data)]


@pytest.mark.parametrize(
    ("inputs", "path"),
    [
        ({"items": {"aff": [0.5, float("inf")]}}, "items.aff[1] is inf"),
        ({"user": {"age": float("nan")}}, "user.age is nan"),
        ({"items": [{"when": object()}]}, "items[0].when: object is not a JSON value"),
    ],
)
def test_non_json_inputs_are_refused_naming_the_path(inputs, path):
    (error,) = errors_of({**decision_json(1), "inputs": inputs})
    assert error["field"] == "inputs" and path in error["reason"]


def test_candidate_errors_name_the_candidate():
    data = decision_json(1)
    data["candidates"][1]["propensity"] = 0
    assert [e["field"] for e in errors_of(data)] == ["candidates.1.propensity"]


def test_a_slate_cannot_repeat_a_position():
    data = decision_json(1)
    data["candidates"][1]["position"] = 1
    assert "share a position" in errors_of(data)[0]["reason"]


def test_record_ids_identify_what_a_resend_would_repeat():
    assert record_id_of(record_json(decision(7))) == "decision:req-000007"
    explanation = Explanation(
        request_id="req-000007",
        ts="2026-11-23T10:00:00Z",
        model_version="m",
        trigger="on_demand",
        explainer="x",
        explanation={},
    )
    assert record_id_of(record_json(explanation)) == f"explanation:req-000007:{explanation.explanation_id}"
    base = {"kind": "kserve_request", "request_id": "abc", "ts": "2026-11-23T10:00:00Z", "source": "s"}
    same = [record_id_of(record_json(KServeMessage(**base, body={"instances": [1]}))) for _ in range(2)]
    other = record_id_of(record_json(KServeMessage(**base, body={"instances": [2]})))
    assert same[0] == same[1] != other  # a reused Ce-Id with another payload is not a duplicate


def test_index_columns_come_from_the_record():
    index = index_of(record_json(decision(10)))
    assert index == {
        "record_id": "decision:req-000010",
        "kind": "decision",
        "request_id": "req-000010",
        "ts": "2026-11-23T10:00:10.000000Z",
        "model_version": "m-2026-11-20",
        "variant": "canary",
        "user_id": "u-10",
    }


def test_hash_is_sha256_of_previous_hash_and_canonical_entry():
    record = record_json(decision(1))
    entry = entry_bytes(1, "2026-11-23T10:00:00.000000Z", record)
    assert json.loads(entry) == {"seq": 1, "received_at": "2026-11-23T10:00:00.000000Z", "record": record}
    assert link_hash(GENESIS, entry) == hashlib.sha256(bytes(32) + entry).hexdigest()


@pytest.mark.parametrize("seq", [1, 10**6, 2**70])
def test_entry_of_a_records_canonical_text_is_byte_for_byte_the_entry_of_the_record(seq):
    record = {**record_json(decision(1)), "inputs": {"é": [1.5, -0.0, 2**70, None, True, "\ud800"], "a": {}}}
    text = canonical_json(record).decode()
    received = "2026-11-23T10:00:00.000000Z"
    assert entry_bytes_of_text(seq, received, text) == entry_bytes(seq, received, record)


def test_every_part_of_an_entry_changes_the_hash():
    record = record_json(decision(1))
    base = link_hash(GENESIS, entry_bytes(1, "2026-11-23T10:00:00.000000Z", record))
    changed = [
        link_hash(GENESIS, entry_bytes(2, "2026-11-23T10:00:00.000000Z", record)),
        link_hash(GENESIS, entry_bytes(1, "2026-11-23T10:00:00.000001Z", record)),
        link_hash(GENESIS, entry_bytes(1, "2026-11-23T10:00:00.000000Z", {**record, "variant": "x"})),
        link_hash("1" * 64, entry_bytes(1, "2026-11-23T10:00:00.000000Z", record)),
    ]
    assert base not in changed and len(set(changed)) == 4


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_survives_a_round_trip_through_json(value):
    """verify re-serializes what it reads; that must give the bytes that were hashed."""
    once = canonical_json(value)
    assert canonical_json(json.loads(once)) == once

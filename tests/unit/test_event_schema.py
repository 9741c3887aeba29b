"""Event schema v1: what producers may send, and the errors they get back."""

from __future__ import annotations

import json

import jsonschema
import pydantic
import pytest

from kfloop.errors import field_errors
from kfloop.events import EVENT_TAGS, SIGNAL_OF, EventType, event_json_schema, parse_event

BASE = {"event_id": "e-1", "user_id": "u-1", "ts": "2026-11-23T10:00:00.5+01:00", "consent": {"personalization": True}}
VALID = {
    "impression": {"item_id": "i", "position": 2, "policy": "bts", "propensity": 0.25},
    "click": {"item_id": "i", "position": 1},
    "dwell": {"item_id": "i", "dwell_ms": 1500},
    "scroll": {"item_id": "i", "scroll_depth": 0.6},
    "conversion": {"item_id": "i", "value": 19.9},
    "rating": {"item_id": "i", "rating": 4},
    "thumbs": {"item_id": "i", "thumb": "down"},
    "survey": {"question_id": "q1", "answer": "very-likely"},
}


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(pydantic.ValidationError) as info:
        parse_event(data)
    return {e["field"]: e["reason"] for e in field_errors(info.value, union_tags=EVENT_TAGS)}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_event_type_parses_and_knows_its_signal(kind):
    event = parse_event({**BASE, "type": kind, **VALID[kind]})
    assert event.signal == SIGNAL_OF[EventType(kind)]
    assert event.ts.utcoffset().total_seconds() == 0  # normalized to UTC
    assert event.ts.hour == 9


def test_signal_is_part_of_the_schema_not_a_convention():
    assert {SIGNAL_OF[t] for t in (EventType.RATING, EventType.THUMBS, EventType.SURVEY)} == {"explicit"}
    errors = errors_of({**BASE, "type": "rating", "signal": "implicit", **VALID["rating"]})
    assert "signal" in errors


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"user_id": "jane@example.com"}, "user_id", "email"),
        ({"ts": "2026-11-23T10:00:00"}, "ts", "timezone"),
        ({"ts": "yesterday"}, "ts", "RFC 3339"),
        ({"ts": "0001-01-01T00:00:00+01:00"}, "ts", "years 1 to 9999"),  # before year 1 in UTC
        ({"ts": "9999-12-31T23:30:00-01:00"}, "ts", "years 1 to 9999"),  # after 9999 in UTC
        ({"dwell_ms": -5}, "dwell_ms", "greater than or equal to 0"),
        ({"traits": {"email": "x@y.z"}}, "traits", "Extra inputs"),
        ({"consent": {}}, "consent.personalization", "required"),
        ({"event_id": ""}, "event_id", "1-140 characters"),
        ({"event_id": "abc\n"}, "event_id", "1-140 characters"),
    ],
)
def test_bad_fields_are_named_with_a_reason(change, field, reason):
    errors = errors_of({**BASE, "type": "dwell", **VALID["dwell"], **change})
    assert field in errors
    assert reason in errors[field]


def test_unknown_type_names_the_type_field():
    assert "type" in errors_of({**BASE, "type": "purchase"})


def test_out_of_range_values_rejected():
    assert "rating" in errors_of({**BASE, "type": "rating", "item_id": "i", "rating": 6})
    assert "scroll_depth" in errors_of({**BASE, "type": "scroll", "item_id": "i", "scroll_depth": 1.5})
    assert "propensity" in errors_of({**BASE, "type": "impression", "item_id": "i", "position": 1, "propensity": 0})


def test_survey_answers_are_choices_or_numbers_never_free_text():
    assert parse_event({**BASE, "type": "survey", "question_id": "q", "answer": 7}).answer == 7
    assert "answer" in " ".join(errors_of({**BASE, "type": "survey", "question_id": "q", "answer": "I am Jane Doe"}))


@pytest.mark.parametrize("kind", sorted(VALID))
def test_exported_json_schema_agrees_with_the_model(kind):
    schema = event_json_schema()
    jsonschema.validate({**BASE, "type": kind, **VALID[kind]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**BASE, "type": kind, **VALID[kind], "email": "x@y.z"}, schema)
    json.dumps(schema)

"""schemathesis against the collector's own OpenAPI document, in process (its event log open in tmp): every check on
every operation (tests/support/fuzz.py), with Segment's write key and without, zero failures."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.python.asgi import shutdown_lifespans  # noqa: E402

from kfloop.eventlog import EventLogConfig  # noqa: E402
from serving.collector.app import create_app  # noqa: E402
from serving.collector.config import CollectorConfig, EventMapping, SegmentConfig  # noqa: E402
from tests.support.fuzz import documented_operations, fuzz, ready_schema  # noqa: E402

pytestmark = pytest.mark.serving

WRITE_KEY = "fuzz-write-key"
WITH_KEY = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
LIMITS = {413: "a body over max_body_bytes (64 KiB here): OpenAPI has no way to state a body's size in bytes"}
FUTURE = {
    422: "an event whose ts is more than max_future_skew_s after its arrival is rejected: a bound relative to the "
    "clock, which JSON Schema cannot state (the operation's description says it)"
}
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/schema"),
    ("POST", "/v1/events"),
    ("POST", "/v1/track"),
    ("POST", "/v1/identify"),
    ("POST", "/v1/page"),
    ("POST", "/v1/screen"),
    ("POST", "/v1/group"),
    ("POST", "/v1/alias"),
    ("POST", "/v1/batch"),
]
SEGMENT = [op for op in OPERATIONS if op[1] not in ("/healthz", "/readyz", "/metrics", "/v1/schema", "/v1/events")]


@pytest.fixture
def api_schema(tmp_path) -> Iterator[Any]:
    """A collector of its own per test: schemathesis's pytest plugin ends an app's lifespan (closing its log)
    after each test."""
    root = tmp_path
    config = CollectorConfig(
        event_log=EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "log")),
        writer_id="collector-fuzz",
        max_body_bytes=64 * 1024,
        segment=SegmentConfig(
            write_keys=[WRITE_KEY],
            pseudonymization_key="fuzz-pseudonymization-key-0123456789",
            track={"Product Clicked": EventMapping(type="click")},
            pages={"Product Detail": EventMapping(type="dwell")},
        ),
    )
    try:
        yield ready_schema(create_app(config))  # the log recovers in the background
    finally:
        shutdown_lifespans()  # the log is closed and sealed


def test_every_operation_of_the_document_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


def _cases() -> list[Any]:
    plain = [pytest.param(m, p, {}, id=f"{m} {p}") for m, p in OPERATIONS]
    keyed = [pytest.param(m, p, WITH_KEY, id=f"{m} {p} write-key") for m, p in SEGMENT]
    return plain + keyed


@pytest.mark.parametrize(("method", "path", "headers"), _cases())
def test_every_check_passes_on_every_operation(api_schema, method, path, headers):
    refused = LIMITS | (FUTURE if path == "/v1/events" else {})  # Segment answers a rejected message with 200
    report = fuzz(
        api_schema, method, path, headers=headers, max_examples=10, max_coverage=80, valid_but_refused=refused
    )
    assert report.cases > 0

"""schemathesis against the audit sink's own OpenAPI document, in process (a SQLite store in tmp): every check on
every operation (tests/support/fuzz.py), zero failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("schemathesis")

from schemathesis.python.asgi import shutdown_lifespans

from kfloop.audit import AuditStoreConfig
from serving.audit.app import create_app
from serving.audit.config import AuditSinkConfig
from tests.support.fuzz import documented_operations, fuzz, ready_schema

pytestmark = pytest.mark.serving

LIMITS = {413: "a body over max_body_bytes (64 KiB here): OpenAPI has no way to state a body's size in bytes"}
REFUSED = {
    "/v1/decisions": {
        422: "a record's rules across its fields (distinct candidate positions, a slate within its candidates, ...) "
        "are its model's validators, which JSON Schema cannot state: such a record is rejected, naming the field"
    },
    "/v1/cloudevents": {
        400: "binary content mode needs the ce-* attribute headers, structured mode (application/cloudevents+json) "
        "none: OpenAPI cannot make a header required for one content type only (the document says it per header)",
        422: "likewise, binary mode checks each ce-* header as its record field (the header's description states "
        "the rule), while structured mode does not read them: their schemas can only say string",
    },
}
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/chain/head"),
    ("POST", "/v1/decisions"),
    ("GET", "/v1/decisions"),
    ("GET", "/v1/decisions/{request_id}"),
    ("POST", "/v1/cloudevents"),
]


@pytest.fixture
def api_schema(tmp_path) -> Iterator[Any]:
    """A sink of its own per test (schemathesis's pytest plugin ends an app's lifespan after each test)."""
    config = AuditSinkConfig(store=AuditStoreConfig(url=f"sqlite:///{tmp_path / 'audit.db'}"), max_body_bytes=64 * 1024)
    try:
        yield ready_schema(create_app(config))
    finally:
        shutdown_lifespans()


def test_every_operation_of_the_document_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_check_passes_on_every_operation(api_schema, method, path):
    report = fuzz(api_schema, method, path, max_examples=15, valid_but_refused=LIMITS | REFUSED.get(path, {}))
    assert report.cases > 0

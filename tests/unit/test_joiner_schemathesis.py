"""schemathesis against the joiner's own OpenAPI document, in process (its log in tmp, replayed and followed):
every check on every operation (tests/support/fuzz.py), zero failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("schemathesis")

from schemathesis.python.asgi import shutdown_lifespans

from serving.joiner.app import create_app
from tests.support.fuzz import documented_operations, fuzz, ready_schema
from tests.unit.test_joiner import joiner_config

pytestmark = pytest.mark.serving

OPERATIONS = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")]


@pytest.fixture
def api_schema(tmp_path) -> Iterator[Any]:
    """A joiner of its own per test (schemathesis's pytest plugin ends an app's lifespan after each test)."""
    try:
        yield ready_schema(create_app(joiner_config(tmp_path)))
    finally:
        shutdown_lifespans()


def test_every_operation_of_the_document_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_check_passes_on_every_operation(api_schema, method, path):
    report = fuzz(api_schema, method, path, max_examples=10)
    assert report.cases > 0

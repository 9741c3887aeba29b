"""schemathesis against the controller's own OpenAPI description, in-process: whatever it sends to each
operation (with the token, and without), every check passes (tests/support/fuzz.py: every check schemathesis has,
positive and negative cases, a fixed seed): no 5xx, every answer as described (status code, content type, headers,
body schema), forbidden input refused, allowed input accepted, `Allow` headers true. Skipped where schemathesis is
not installed (it is in the `dev` group)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from kfloop.audit import AuditRecorder, store_delivery  # noqa: E402
from kfloop.audit.store.sqlite import SqliteStore  # noqa: E402
from monitoring.controller.app import build_controller, create_app  # noqa: E402
from monitoring.controller.config import ControllerConfig  # noqa: E402
from tests.support.controller import TOKEN, config_data  # noqa: E402
from tests.support.fuzz import documented_operations, fuzz  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = {413: "a body over max_body_bytes (64 KiB here): OpenAPI has no way to state a body's size in bytes"}
OPERATIONS = [
    ("POST", "/v1/alerts"),
    ("POST", "/v1/pause"),
    ("POST", "/v1/resume"),
    ("GET", "/v1/status"),
    ("GET", "/v1/actions"),
    ("GET", "/v1/actions/{action_id}"),
    ("POST", "/v1/experiments"),
    ("GET", "/v1/experiments"),
    ("GET", "/v1/experiments/{experiment_id}"),
    ("POST", "/v1/experiments/{experiment_id}/approve"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[Any]:
    config = ControllerConfig.model_validate(config_data(tmp_path, max_body_bytes=64 * 1024))
    with SqliteStore(tmp_path / "audit.db") as audit_store:
        recorder = AuditRecorder(config.audit, deliver=store_delivery(audit_store))
        controller = build_controller(config, recorder=recorder)
        controller.open(start_worker=False)  # decisions are made and stored; junk launches no run
        try:
            yield schemathesis.openapi.from_asgi("/openapi.json", create_app(config, controller))
        finally:
            controller.close()


def test_every_operation_of_the_description_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["token", "no-token"])
def test_every_check_passes_on_every_operation(api_schema, method, path, headers):
    report = fuzz(api_schema, method, path, headers=headers, max_examples=20, valid_but_refused=LIMITS)
    assert report.cases > 0

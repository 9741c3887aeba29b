"""schemathesis against the controller's own OpenAPI description, in-process: whatever it sends to each
operation (with the token, and without), no answer is a 5xx, and every answer conforms to the description
(status code declared, content type, body schema). Skipped where schemathesis is not installed (it is in the
`dev` group). Each operation gets its own Hypothesis run (schemathesis's pytest fixture integration does not
work with pytest 9 yet)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from kfloop.audit import AuditRecorder, store_delivery  # noqa: E402
from kfloop.audit.store.sqlite import SqliteStore  # noqa: E402
from monitoring.controller.app import build_controller, create_app  # noqa: E402
from monitoring.controller.config import ControllerConfig  # noqa: E402
from tests.support.controller import TOKEN, config_data  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
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
    described = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["token", "no-token"])
def test_no_request_gets_a_server_error_or_an_undescribed_answer(api_schema, method, path, headers):
    operation = api_schema[path][method]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers)

    check()

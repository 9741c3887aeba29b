"""The controller's HTTP API in-process: the webhook takes Alertmanager's version 4 payload with the bearer
token; a bad body is a 400 that changes nothing; no or a wrong token is a 401; the kill switch; /metrics;
and an OpenAPI description that states every status code the API answers with."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from kfloop.audit import AuditRecorder, store_delivery
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.errors import MalformedRequest
from kfloop.registry import ModelRegistry
from monitoring.controller.alerts import parse_notification
from monitoring.controller.app import build_controller, create_app
from monitoring.controller.config import ControllerConfig
from tests.support.controller import TOKEN, alert, config_data, notification, register
from tests.unit.serving_junk import json_junk

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, ControllerConfig]]:
    for n in range(2):
        register(ModelRegistry(tmp_path / "registry"), tmp_path / "models", n)
    config = ControllerConfig.model_validate(config_data(tmp_path, max_body_bytes=4096))
    with SqliteStore(tmp_path / "audit.db") as audit_store:
        recorder = AuditRecorder(config.audit, deliver=store_delivery(audit_store))
        app = create_app(config, build_controller(config, recorder=recorder))
        with TestClient(app) as client:
            wait_ready(client)
            yield client, config


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.02)


def post_alerts(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/alerts", content=content, headers={**AUTH, **(headers or {})})


def stored_alerts(client: TestClient) -> int:
    return len(client.get("/v1/actions", headers=AUTH).json())


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "}],
    ids=["none", "wrong", "not-bearer", "empty"],
)
def test_no_or_a_wrong_token_is_401_and_nothing_is_recorded(api, headers):
    client, _ = api
    body = json.dumps(notification(alert("CanaryErrorRateHigh", "rollback")))
    for path in ("/v1/alerts", "/v1/pause"):
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "Unauthorized" and answer.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/v1/status", headers=headers).status_code == 401
    assert stored_alerts(client) == 0


def test_the_token_file_is_read_again_when_it_changes(api):
    client, config = api
    assert client.get("/v1/status", headers=AUTH).status_code == 200
    config.token_file.write_text("rotated-token\n")
    assert client.get("/v1/status", headers=AUTH).status_code == 401
    assert client.get("/v1/status", headers={"Authorization": "Bearer rotated-token"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[]", "not an Alertmanager webhook object"),
        ({**notification(alert("A", "retrain")), "version": "3"}, "version"),
        ({**notification(alert("A", "retrain")), "alerts": "many"}, "alerts"),
        (notification({**alert("A", "retrain"), "fingerprint": ""}), "alerts.0.fingerprint"),
        (notification({**alert("A", "retrain"), "labels": {"action": "retrain"}}), "alerts.0.labels"),
        (notification({**alert("A", "retrain"), "labels": {"alertname": "A", "n": 1}}), "alerts.0.labels.n"),
        (notification({**alert("A", "retrain"), "startsAt": "2026-12-01T09:00:00"}), "alerts.0.startsAt"),
        (notification({**alert("A", "retrain"), "startsAt": "0001-01-01T00:00:00+01:00"}), "alerts.0.startsAt"),
        (notification({**alert("A", "retrain"), "status": "pending"}), "alerts.0.status"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_bad_body_is_400_naming_the_problem_and_does_nothing(api, body, named):
    client, _ = api
    answer = post_alerts(client, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error"] == "MalformedRequest"
    assert named in error["message"] or named in json.dumps(error.get("details"))
    assert stored_alerts(client) == 0


def test_a_body_over_the_limit_is_413(api):
    client, _ = api
    big = notification(*[alert(f"A{n}", "none", fingerprint=f"fp{n}") for n in range(40)])
    assert post_alerts(client, big).status_code == 413


times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda t: t.isoformat())
offsets = st.sampled_from(["Z", "+01:00", "-12:00", ""])
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved"]) | json_junk,
        "labels": st.dictionaries(st.sampled_from(["alertname", "action", "x"]), st.text(max_size=6)) | json_junk,
        "annotations": st.dictionaries(st.sampled_from(["summary", "value"]), st.text(max_size=6)) | json_junk,
        "startsAt": st.tuples(times, offsets).map("".join) | json_junk,
        "endsAt": st.tuples(times, offsets).map("".join) | json_junk,
        "fingerprint": st.text(max_size=6) | json_junk,
    },
)
payloads = json_junk | st.fixed_dictionaries(
    {"version": st.just("4") | json_junk, "alerts": st.lists(alert_like, max_size=3) | json_junk},
    optional={"groupKey": st.text(max_size=4), "status": st.just("firing"), "receiver": st.text(max_size=4)},
)


@settings(max_examples=300, deadline=None)
@given(body=payloads)
def test_any_body_is_either_a_notification_with_keyed_alerts_or_a_400(body):
    """Never another exception (which would be a 500): junk and near-misses alike."""
    try:
        parsed = parse_notification(body)
    except MalformedRequest as exc:
        assert exc.http_status == 400 and exc.message
        return
    for item in parsed.alerts:
        assert item.key.startswith(item.fingerprint + "@") and item.evidence().alertname


def test_an_alert_is_acted_on_and_shows_in_status_actions_and_metrics(api):
    client, _ = api
    answer = post_alerts(client, notification(alert("ModelStale", "retrain"), alert("FeedbackStalled", "none")))
    assert answer.status_code == 200, answer.text
    received = answer.json()
    assert (received["alerts"], received["new"]) == (2, 2)
    assert sorted(a["kind"] for a in received["actions"]) == ["none", "retrain"]
    assert post_alerts(client, notification(alert("ModelStale", "retrain"))).json()["new"] == 0
    retrain = next(a for a in received["actions"] if a["kind"] == "retrain")
    deadline = time.monotonic() + 60
    while (action := client.get(f"/v1/actions/{retrain['id']}", headers=AUTH).json())["phase"] != "done":
        assert time.monotonic() < deadline, action
        time.sleep(0.05)
    assert action["outcome"] == "deployed" and action["variant"] == "canary"
    status = client.get("/v1/status", headers=AUTH).json()
    assert status["paused"] is None and status["open"] == [] and status["mode"] == "local"
    assert [a["kind"] for a in client.get("/v1/actions?kind=retrain", headers=AUTH).json()] == ["retrain"]
    metrics = samples(client.get("/metrics").text)
    assert metrics[("kfloop_controller_actions_total", (("action", "retrain"), ("outcome", "deployed")))] == 1
    assert metrics[("kfloop_controller_actions_total", (("action", "none"), ("outcome", "recorded")))] == 1
    assert metrics[("kfloop_pipeline_last_run_success", (("pipeline", "training"),))] == 1
    assert metrics[("kfloop_pipeline_last_run_timestamp_seconds", (("pipeline", "training"),))] > 1.7e9
    assert metrics[("kfloop_controller_paused", ())] == 0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_pause_and_resume_through_the_api(api):
    client, _ = api
    paused = client.post("/v1/pause", json={"operator": "alice", "reason": "data bug upstream"}, headers=AUTH)
    assert paused.status_code == 200 and paused.json()["outcome"] == "paused"
    status = client.get("/v1/status", headers=AUTH).json()
    assert status["paused"]["by"] == "alice" and status["paused"]["reason"] == "data bug upstream"
    assert samples(client.get("/metrics").text)[("kfloop_controller_paused", ())] == 1
    (recorded,) = post_alerts(client, notification(alert("FeatureDriftHigh", "retrain"))).json()["actions"]
    assert (recorded["phase"], recorded["outcome"]) == ("done", "paused")
    resumed = client.post("/v1/resume", json={"operator": "alice"}, headers=AUTH)
    assert resumed.status_code == 200 and client.get("/v1/status", headers=AUTH).json()["paused"] is None


@pytest.mark.parametrize(
    "body", [b"{}", b'{"operator": ""}', b'{"operator": "a b"}', b'{"operator": "x", "extra": 1}'], ids=str
)
def test_a_switch_without_a_valid_operator_is_422(api, body):
    client, _ = api
    answer = client.post("/v1/pause", content=body, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["error"] == "InvalidInput"
    assert client.get("/v1/status", headers=AUTH).json()["paused"] is None


def test_an_unknown_action_is_404_and_a_bad_limit_422(api):
    client, _ = api
    assert client.get("/v1/actions/act-nope", headers=AUTH).status_code == 404
    assert client.get("/v1/actions?limit=0", headers=AUTH).status_code == 422


def test_the_openapi_description_states_every_status_code_and_the_bearer_token(api):
    client, _ = api
    spec = client.get("/openapi.json").json()
    codes = {
        (path, method): sorted(operation["responses"])
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }
    assert codes[("/v1/alerts", "post")] == ["200", "400", "401", "413", "503"]
    assert codes[("/v1/pause", "post")] == ["200", "400", "401", "413", "422", "503"]
    assert codes[("/v1/actions/{action_id}", "get")] == ["200", "401", "404", "422", "503"]
    assert "HTTPValidationError" not in json.dumps(spec)  # every error has the one body shape
    assert codes[("/readyz", "get")] == ["200", "503"]
    assert spec["paths"]["/v1/alerts"]["post"]["security"] == [{"bearerToken": []}]
    assert "security" not in spec["paths"]["/metrics"]["get"]
    body = spec["paths"]["/v1/alerts"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["version"]["enum"] == ["4"]


def test_a_missing_token_file_is_a_config_error_unless_the_config_makes_one(tmp_path):
    from kfloop.errors import ConfigError
    from monitoring.controller.auth import ensure_token_file

    with pytest.raises(ConfigError, match="token_file"):
        ensure_token_file(tmp_path / "absent", create=False)
    ensure_token_file(tmp_path / "made" / "token", create=True)
    made = tmp_path / "made" / "token"
    assert len(made.read_text().strip()) >= 40 and made.stat().st_mode & 0o777 == 0o600


def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(tmp_path, capsys):
    from monitoring.controller.app import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("port: 0\nretrain:\n  command: [kfloop, '']\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("controller: config file") and "port" in err and "retrain" in err
    missing_token = tmp_path / "missing-token.yaml"
    missing_token.write_text(f"token_file: {tmp_path / 'nope'}\n")
    assert main(["--config", str(missing_token)]) == 2
    assert "token_file" in capsys.readouterr().err


def test_kfloop_pause_says_what_is_wrong_when_it_cannot_reach_the_controller(tmp_path, capsys):
    import argparse

    from kfloop.cli.commands.controller import pause
    from kfloop.processes import free_port

    config = tmp_path / "controller.yaml"
    config.write_text(f"token_file: {tmp_path / 'token'}\n")
    args = argparse.Namespace(config=str(config), url=None, operator="alice", reason="")
    assert pause(args) == 2 and "No such file" in capsys.readouterr().err
    (tmp_path / "token").write_text("x")
    args.url = f"http://127.0.0.1:{free_port()}"
    assert pause(args) == 2 and "unreachable" in capsys.readouterr().err


def test_kfloop_approve_and_pause_post_to_their_routes_with_the_token(tmp_path, capsys):
    """Against a stand-in that records what it is sent (a route mixed up with the config file's path was a bug)."""
    import argparse
    import json as jsonlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from kfloop.cli.commands.controller import approve, pause

    seen: list[tuple[str, str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = jsonlib.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers["Authorization"], body))
            answer = jsonlib.dumps({"actor": body["operator"], "finished_at": "t", "reason": "r", "id": "a1"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "controller.yaml"
        config.write_text(f"token_file: {tmp_path / 'token'}\n")
        (tmp_path / "token").write_text("s3cret")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        common = {"config": str(config), "url": url, "operator": "alice", "reason": "ok"}
        assert approve(argparse.Namespace(experiment="exp-1", **common)) == 0
        assert pause(argparse.Namespace(**common)) == 0
    finally:
        server.shutdown()
    assert [(path, auth) for path, auth, _ in seen] == [
        ("/v1/experiments/exp-1/approve", "Bearer s3cret"),
        ("/v1/pause", "Bearer s3cret"),
    ]
    assert seen[0][2] == {"operator": "alice", "reason": "ok"}
    assert "experiment exp-1 approved for 100%" in capsys.readouterr().out

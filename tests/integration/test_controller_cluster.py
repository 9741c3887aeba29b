"""The controller in cluster mode, against local HTTP stand-ins of the two APIs it calls (no API server or
Kubeflow Pipelines can be had here): a rollback is the same InferenceService merge patch `kfloop rollback
--cluster` sends; a retraining run is a KFP run of the uploaded pipeline's newest version, made through the
real kfp.Client, found again (not made twice) after a crash, and its blessed result is patched in as the
canary at 10%.

The KFP stand-in implements what kfp.Client 2.13 calls for an experiment, a run, its state and the run list,
checks the bearer token, and records every request; the Kubernetes one is tests/unit/test_deploy_cluster's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kfloop.audit import AuditRecorder, store_delivery
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.deploy import ClusterTarget, ServingTarget, change_serving, deploy, read_state
from kfloop.registry import ModelRegistry
from monitoring.controller.alerts import parse_notification
from monitoring.controller.app import build_controller
from monitoring.controller.config import ControllerConfig
from monitoring.controller.engine import Controller
from tests.support.controller import MANIFEST, alert, config_data, notification, register
from tests.unit.test_deploy_cluster import PATH, TOKEN, StandIn

pytestmark = pytest.mark.integration

API = "/apis/v2beta1"
KFP_TOKEN = "kfp-token"


@dataclass
class KfpStandIn:
    requests: list[dict[str, Any]] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines = [{"pipeline_id": "p-1", "display_name": "kfloop-training"}]
    versions = [
        {"pipeline_version_id": "pv-old", "pipeline_id": "p-1", "created_at": "2026-11-01T00:00:00Z"},
        {"pipeline_version_id": "pv-new", "pipeline_id": "p-1", "created_at": "2026-12-01T00:00:00Z"},
    ]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        self.requests.append({"method": method, "path": path, "query": query, "body": body})
        wanted = _filtered_name(query)
        if (method, path) == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", f"{API}/experiments"):
            return 200, {"experiments": [e for e in self.experiments if e["display_name"] == wanted]}
        if (method, path) == ("POST", f"{API}/experiments"):
            self.experiments.append({"experiment_id": f"e-{len(self.experiments) + 1}", **body})
            return 200, self.experiments[-1]
        if (method, path) == ("GET", f"{API}/pipelines"):
            return 200, {"pipelines": [p for p in self.pipelines if p["display_name"] == wanted]}
        if (method, path) == ("GET", f"{API}/pipelines/p-1/versions"):
            newest_first = query.get("sort_by") == ["created_at desc"]
            listed = sorted(self.versions, key=lambda v: v["created_at"], reverse=newest_first)
            return 200, {"pipeline_versions": listed[: int(query.get("page_size", ["10"])[0])]}
        if (method, path) == ("POST", f"{API}/runs"):
            run = {"run_id": f"r-{len(self.runs) + 1}", "state": "PENDING", **body}
            self.runs[run["run_id"]] = run
            return 200, run
        if (method, path) == ("GET", f"{API}/runs"):
            found = [r for r in self.runs.values() if r["display_name"] == wanted]
            return 200, {"runs": [r for r in found if r["experiment_id"] == query["experiment_id"][0]]}
        if method == "GET" and path.startswith(f"{API}/runs/") and path.split("/")[-1] in self.runs:
            return 200, self.runs[path.split("/")[-1]]
        return 404, {"error": f"the stand-in does not implement {method} {path}"}

    def posted_runs(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if (r["method"], r["path"]) == ("POST", f"{API}/runs")]


def _filtered_name(query: dict[str, list[str]]) -> str:
    predicates = json.loads(query.get("filter", ["{}"])[0]).get("predicates", [])
    return next((p.get("stringValue", p.get("string_value")) for p in predicates if p["key"] == "display_name"), "")


def _kfp_handler(state: KfpStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization") != f"Bearer {KFP_TOKEN}":
                status, payload = 401, {"error": "no or a wrong token"}
            else:
                status, payload = state.handle(method, url.path, parse_qs(url.query), json.loads(raw) if raw else None)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[StandIn, KfpStandIn, ControllerConfig]]:
    isvc = yaml.safe_load(MANIFEST.read_text())
    isvc["metadata"]["namespace"] = "kfloop"
    k8s = StandIn(isvc)
    kfp_state = KfpStandIn()
    kfp = ThreadingHTTPServer(("127.0.0.1", 0), _kfp_handler(kfp_state))
    serve(k8s), serve(kfp)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(k8s.url)))
    (tmp_path / "kfp-token").write_text(KFP_TOKEN)
    kfp_config = {"host": f"http://127.0.0.1:{kfp.server_address[1]}", "token_file": str(tmp_path / "kfp-token")}
    data = config_data(tmp_path, mode="cluster", serving__kubeconfig=str(kubeconfig))
    data["retrain"]["kfp"] = {**kfp_config, "parameters": {"config_json": "{}"}}
    try:
        yield k8s, kfp_state, ControllerConfig.model_validate(data)
    finally:
        for server in (k8s, kfp):
            server.shutdown()
            server.server_close()


def _kubeconfig(server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": TOKEN}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "tester"}}],
        "current-context": "stand-in",
    }


def start(config: ControllerConfig, audit_store: SqliteStore) -> Controller:
    controller = build_controller(config, recorder=AuditRecorder(config.audit, deliver=store_delivery(audit_store)))
    controller.open(start_worker=False)
    return controller


def settle(controller: Controller, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while controller.store.open_actions():
        assert time.monotonic() < deadline, controller.store.open_actions()
        time.sleep(min(controller.reconcile_once(), 0.02))


def crash(controller: Controller) -> None:
    controller.recorder.shipper.stop()
    controller.recorder.spool.close()
    controller.store.close()


def patches(k8s: StandIn) -> list[dict[str, Any]]:
    return [r["body"] for r in k8s.requests if r["method"] == "PATCH" and r["path"] == PATH]


def test_a_rollback_on_a_cluster_is_kfloop_rollbacks_merge_patch(cluster, tmp_path):
    k8s, _, config = cluster
    registry = ModelRegistry(config.serving.registry_uri)
    versions = [register(registry, tmp_path / "models", n) for n in range(2)]
    target = ServingTarget(config.serving.state_dir, MANIFEST, registry, ClusterTarget(config.serving.kubeconfig))
    change_serving(target, "deploy", lambda s: deploy(s, registry, versions[0], 20, operator="me"))  # --cluster
    with SqliteStore(tmp_path / "audit.db") as audit_store:
        controller = start(config, audit_store)
        try:
            controller.receive(parse_notification(notification(alert("CanaryErrorRateHigh", "rollback"))))
            settle(controller)
            (done,) = controller.store.recent_actions(1)
        finally:
            controller.close()
    assert done.outcome == "rolled_back" and done.details["cluster_patch"]["canaryTrafficPercent"] == 0
    assert patches(k8s)[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert k8s.objects[PATH]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert read_state(config.serving.state_dir).canary is None


def test_a_retraining_run_is_a_kfp_run_found_again_after_a_crash_and_its_result_the_canary(cluster, tmp_path):
    k8s, kfp, config = cluster
    registry = ModelRegistry(config.serving.registry_uri)
    register(registry, tmp_path / "models", 0)
    with SqliteStore(tmp_path / "audit.db") as audit_store:
        controller = start(config, audit_store)
        (action,) = controller.receive(parse_notification(notification(alert("FeatureDriftHigh", "retrain"))))
        controller.advance(action, False)  # pending -> starting, recorded
        starting = controller.store.action(action.id)
        controller.kinds["retrain"].runner.launch(f"kfloop-retrain-{action.id}", starting.details)
        crash(controller)  # launched, but the controller died before recording it
        controller = start(config, audit_store)
        try:
            controller.reconcile_once()
            running = controller.store.action(action.id)
            assert running.phase == "running" and running.details["handle"] == {"kfp_run_id": "r-1"}
            (posted,) = kfp.posted_runs()  # found by its name, not made twice
            assert posted["display_name"] == f"kfloop-retrain-{action.id}"
            assert posted["pipeline_version_reference"] == {"pipeline_id": "p-1", "pipeline_version_id": "pv-new"}
            assert posted["runtime_config"]["parameters"] == {"config_json": "{}"}
            kfp.runs["r-1"]["state"] = "RUNNING"
            controller.reconcile_once()
            assert controller.store.action(action.id).phase == "running"
            new = register(registry, tmp_path / "models", 1)  # what the run's push step registers
            kfp.runs["r-1"]["state"] = "SUCCEEDED"
            settle(controller)
            done = controller.store.action(action.id)
        finally:
            controller.close()
    assert (done.outcome, done.model_version) == ("deployed", new)
    predictor = patches(k8s)[-1]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    env = {e["name"]: e["value"] for e in predictor["containers"][0]["env"]}
    assert env["STORAGE_URI"].endswith(f"/{new}") and env["KFLOOP_VARIANT"] == "canary"
    assert read_state(config.serving.state_dir).canary.version == new


def test_a_failed_kfp_run_is_recorded_as_failed(cluster, tmp_path):
    _, kfp, config = cluster
    register(ModelRegistry(config.serving.registry_uri), tmp_path / "models", 0)
    with SqliteStore(tmp_path / "audit.db") as audit_store:
        controller = start(config, audit_store)
        try:
            (action,) = controller.receive(parse_notification(notification(alert("ModelStale", "retrain"))))
            controller.reconcile_once()
            controller.reconcile_once()
            kfp.runs["r-1"]["state"] = "FAILED"
            settle(controller)
            done = controller.store.action(action.id)
        finally:
            controller.close()
    assert done.outcome == "failed" and "KFP run FAILED" in done.reason
    assert done.details["run_end"]["success"] is False

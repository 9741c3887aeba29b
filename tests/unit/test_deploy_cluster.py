"""`kfloop deploy | promote | rollback --cluster`: the kubernetes client patches the InferenceService.

The API server is a local HTTP stand-in (no Kubernetes API server can be had here) that serves the
InferenceService from manifests/serving, checks the bearer token from the kubeconfig, accepts only JSON merge
patches on the InferenceService's path, applies them (RFC 7386) and records every request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfloop.cli.commands import serve as commands
from kfloop.deploy import read_state
from kfloop.registry import ModelRegistry
from tests.unit.test_deploy import MANIFEST, cli_args, register

TOKEN = "stand-in-token"
PATH = "/apis/serving.kserve.io/v1beta1/namespaces/kfloop/inferenceservices/kfloop-ranker"
MERGE_PATCH = "application/merge-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class StandIn(ThreadingHTTPServer):
    def __init__(self, isvc: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects = {PATH: isvc}
        self.requests: list[dict[str, Any]] = []
        self.refuse_patches = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str) -> None:
        self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._status(401, "Unauthorized")
            return False
        return True

    def do_GET(self) -> None:
        self.server.requests.append({"method": "GET", "path": self.path})
        if not self._authorized():
            return
        if self.path not in self.server.objects:
            self._status(404, "NotFound")
            return
        self._answer(200, self.server.objects[self.path])

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content_type = self.headers.get("Content-Type")
        self.server.requests.append({"method": "PATCH", "path": self.path, "content_type": content_type, "body": body})
        if not self._authorized():
            return
        if self.server.refuse_patches:
            self._status(403, "Forbidden")
            return
        if content_type != MERGE_PATCH:
            self._status(415, "UnsupportedMediaType")
            return
        if self.path not in self.server.objects:
            self._status(404, "NotFound")
            return
        self.server.objects[self.path] = merge_patch(self.server.objects[self.path], body)
        self._answer(200, self.server.objects[self.path])


@pytest.fixture
def api_server():
    isvc = yaml.safe_load(MANIFEST.read_text())
    isvc["metadata"]["namespace"] = "kfloop"
    server = StandIn(isvc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(tmp_path: Path, api_server: StandIn) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": {"server": api_server.url}}],
                "users": [{"name": "tester", "user": {"token": TOKEN}}],
                "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "tester"}}],
                "current-context": "stand-in",
            }
        )
    )
    return path


@pytest.fixture
def setup(tmp_path: Path, kubeconfig: Path):
    registry = ModelRegistry(tmp_path / "registry")
    versions = [register(registry, tmp_path, n) for n in range(3)]

    def args(**extra: Any):
        return cli_args(tmp_path, MANIFEST, registry, cluster=True, kubeconfig=str(kubeconfig), **extra)

    return registry, versions, args


def patches(server: StandIn) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["method"] == "PATCH"]


def env_of(isvc_or_patch: dict[str, Any]) -> dict[str, str]:
    (container,) = isvc_or_patch["spec"]["predictor"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_a_canary_rollout_promote_and_rollback_are_merge_patches_of_the_predictor(api_server, setup, tmp_path):
    _, versions, args = setup
    # the manifest names no registered version: the state is seeded with the latest deployable (versions[2])
    assert commands.deploy(args(version=versions[0], canary=20)) == 0
    (patch,) = patches(api_server)
    assert patch["path"] == PATH and patch["content_type"] == MERGE_PATCH
    assert patch["body"]["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert env_of(patch["body"]) == {
        "STORAGE_URI": f"s3://mlpipeline/kfloop/registry/{versions[0]}",
        "KFLOOP_VARIANT": "canary",
    }
    served = api_server.objects[PATH]
    assert served["spec"]["predictor"]["canaryTrafficPercent"] == 20
    container = served["spec"]["predictor"]["containers"][0]
    assert container["image"] == "kfloop-serving" and "--model-dir=/mnt/models" in container["args"]
    assert served["spec"]["transformer"] == yaml.safe_load(MANIFEST.read_text())["spec"]["transformer"]

    assert commands.promote(args()) == 0
    promote_patch = patches(api_server)[-1]["body"]["spec"]["predictor"]
    assert "canaryTrafficPercent" in promote_patch and promote_patch["canaryTrafficPercent"] is None
    assert env_of(api_server.objects[PATH])["KFLOOP_VARIANT"] == "stable"
    assert "canaryTrafficPercent" not in api_server.objects[PATH]["spec"]["predictor"]
    assert env_of(api_server.objects[PATH])["STORAGE_URI"].endswith(versions[0])

    assert commands.deploy(args(version=versions[1], canary=10)) == 0
    assert commands.rollback(args()) == 0
    assert patches(api_server)[-1]["body"] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert read_state(tmp_path / "state").canary is None


def test_a_refused_patch_leaves_the_local_state_unchanged(api_server, setup, tmp_path, capsys):
    _, versions, args = setup
    api_server.refuse_patches = True
    assert commands.deploy(args(version=versions[0], canary=20)) == 2
    assert "403" in capsys.readouterr().err
    assert read_state(tmp_path / "state").canary is None


def test_a_missing_inference_service_is_a_clear_error(api_server, setup, capsys):
    _, versions, args = setup
    assert commands.deploy(args(version=versions[0], canary=20, namespace="elsewhere")) == 2
    assert "InferenceService elsewhere/kfloop-ranker does not exist" in capsys.readouterr().err
    assert patches(api_server) == []

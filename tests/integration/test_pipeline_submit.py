"""`kfloop pipeline submit` through the real kfp.Client against a local stand-in of the KFP v2beta1 API.

The stand-in implements only what kfp.Client 2.13 calls for an upload, a run and a recurring run; it
records every request, loads each uploaded package as KFP IR, and answers 404 to anything else.
"""

from __future__ import annotations

import argparse
import cgi
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from components.evaluate.config import EvaluateTask
from components.examplegen.config import ExampleGenTask
from components.push.config import PushTask
from components.validate.config import ValidateTask
from kfloop.cli.commands.pipeline import compile_command
from pipelines.config import PipelineConfig
from pipelines.runner import kfp_cron, submit

pytestmark = pytest.mark.integration

API = "/apis/v2beta1"


@dataclass
class KfpStandIn:
    """State of the stand-in: what exists and every request received."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    uploaded_specs: list[dict[str, Any]] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, Any]]:
        self.requests.append({"method": method, "path": path, "query": query, "body": body})
        route = (method, path)
        if route == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": False}
        if route == ("GET", f"{API}/experiments"):
            wanted = _filtered_name(query)
            return 200, {"experiments": [e for e in self.experiments.values() if e["display_name"] == wanted]}
        if route == ("POST", f"{API}/experiments"):
            experiment = {"experiment_id": f"exp-{len(self.experiments) + 1}", "display_name": body["display_name"]}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if route == ("GET", f"{API}/pipelines"):
            wanted = _filtered_name(query)
            return 200, {"pipelines": [p for p in self.pipelines.values() if p["display_name"] == wanted]}
        if route == ("POST", f"{API}/pipelines/upload"):
            pipeline = {"pipeline_id": f"p-{len(self.pipelines) + 1}", "display_name": query["name"][0]}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._add_version(pipeline["pipeline_id"], query["name"][0], body)
            return 200, pipeline
        if route == ("POST", f"{API}/pipelines/upload_version"):
            pipeline_id = query["pipelineid"][0]
            if pipeline_id not in self.pipelines:
                return 404, {"error": "no such pipeline"}
            return 200, self._add_version(pipeline_id, query["name"][0], body)
        if method == "GET" and path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            return 200, {"pipeline_versions": self.versions.get(path.split("/")[-2], [])}
        if route == ("POST", f"{API}/runs"):
            return 200, {"run_id": f"run-{len(self.requests)}", **body}
        if route == ("POST", f"{API}/recurringruns"):
            return 200, {"recurring_run_id": f"rr-{len(self.requests)}", **body}
        self.unanswered.append(f"{method} {path}")
        return 404, {"error": f"the stand-in does not implement {method} {path}"}

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict[str, Any]:
        spec = _load_ir(package)
        self.uploaded_specs.append(spec)
        version = {
            "pipeline_version_id": f"pv-{sum(len(v) for v in self.versions.values()) + 1}",
            "pipeline_id": pipeline_id,
            "display_name": name,
        }
        self.versions.setdefault(pipeline_id, []).append(version)
        return version


def _filtered_name(query: dict[str, list[str]]) -> str:
    predicates = json.loads(query.get("filter", ["{}"])[0]).get("predicates", [])
    return next((p.get("string_value", p.get("stringValue")) for p in predicates if p["key"] == "display_name"), "")


def _load_ir(package: bytes) -> dict[str, Any]:
    """The uploaded file must be a KFP pipeline spec that kfp itself can load."""
    from kfp.components import load_component_from_text

    text = package.decode()
    load_component_from_text(text)
    return yaml.safe_load(text)


def _handler(state: KfpStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            body: Any = None
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                form = cgi.FieldStorage(
                    fp=io.BytesIO(raw),
                    headers=self.headers,
                    environ={"REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type},
                )
                body = form["uploadfile"].file.read()
            elif raw:
                body = json.loads(raw)
            status, payload = state.handle(method, url.path, parse_qs(url.query), body)
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


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, KfpStandIn]]:
    state = KfpStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def calls(state: KfpStandIn, method: str, path: str) -> list[dict[str, Any]]:
    return [r for r in state.requests if r["method"] == method and r["path"] == path]


def test_a_submission_uploads_the_pipeline_and_starts_a_run_with_the_config(kfp_api, tmp_path: Path):
    host, state = kfp_api
    config = PipelineConfig.model_validate({"registry": {"uri": "s3://models/kfloop"}})
    submitted = submit(config, host=host)
    assert [s["pipelineInfo"]["name"] for s in state.uploaded_specs] == ["kfloop-training"]
    tasks = state.uploaded_specs[0]["root"]["dag"]["tasks"]
    assert set(tasks) == {"examplegen", "validate", "transform", "train", "evaluate", "push"}
    (run,) = calls(state, "POST", f"{API}/runs")
    assert run["body"]["experiment_id"] == submitted.experiment_id
    reference = run["body"]["pipeline_version_reference"]
    assert (reference["pipeline_id"], reference["pipeline_version_id"]) == (submitted.pipeline_id, submitted.version_id)
    sent = run["body"]["runtime_config"]["parameters"]
    assert sent == config.tasks().parameters(), "each task's configuration, one parameter each"
    readers = {"examplegen": ExampleGenTask, "validate": ValidateTask, "evaluate": EvaluateTask, "push": PushTask}
    for task, model in readers.items():
        assert model.model_validate_json(sent[f"{task}_config"]).registry_uri == "s3://models/kfloop", task
    assert not calls(state, "POST", f"{API}/recurringruns")
    assert state.unanswered == []


def test_a_schedule_creates_a_recurring_run_and_a_resubmission_a_new_version(kfp_api):
    host, state = kfp_api
    config = PipelineConfig()
    first = submit(config, host=host, schedule="0 3 * * *", experiment="nightly")
    second = submit(config, host=host, schedule="0 0 3 * * *", experiment="nightly")
    assert second.pipeline_id == first.pipeline_id and second.version_id != first.version_id
    assert len(calls(state, "POST", f"{API}/pipelines/upload")) == 1
    assert len(calls(state, "POST", f"{API}/pipelines/upload_version")) == 1
    assert len(calls(state, "POST", f"{API}/experiments")) == 1, "the experiment is found by name the second time"
    recurring = calls(state, "POST", f"{API}/recurringruns")
    assert [r["body"]["trigger"]["cron_schedule"]["cron"] for r in recurring] == ["0 0 3 * * *"] * 2
    assert all(
        r["body"]["mode"] == "ENABLE" and int(r["body"]["max_concurrency"]) == 1 and r["body"]["no_catchup"]
        for r in recurring
    )
    assert recurring[1]["body"]["pipeline_version_reference"]["pipeline_version_id"] == second.version_id
    assert not calls(state, "POST", f"{API}/runs")
    assert state.unanswered == []


def test_cron_expressions_get_kfps_seconds_field():
    assert kfp_cron("*/15 * * * *") == "0 */15 * * * *"
    assert kfp_cron("30 0 3 * * *") == "30 0 3 * * *"
    with pytest.raises(Exception, match="cron"):
        kfp_cron("daily")


def test_compile_writes_ir_yaml_with_the_configured_image(tmp_path: Path):
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text("base_image: registry.example/kfloop-pipeline:9.9\n")
    output = tmp_path / "out" / "training.yaml"
    assert compile_command(argparse.Namespace(config=str(config_file), registry=None, output=str(output))) == 0
    spec = yaml.safe_load(output.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/kfloop-pipeline:9.9"}
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    expected = PipelineConfig().tasks().parameters()
    assert {name: defaults[name]["defaultValue"] for name in expected} == expected

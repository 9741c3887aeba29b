"""Acceptance: the front door (transformer, then a predictor, each a real kserve.ModelServer process on a
testbed) speaks the Open Inference Protocol to standard clients, unchanged: tritonclient's HTTP client (binary
tensors, its default), its gRPC client, KServe's InferenceRESTClient and InferenceGRPCClient. Each gets the same
slate for the same request id and user (a greedy policy: the slate is the model's, whoever asks), and requested
outputs are honoured on REST and gRPC. Then schemathesis against the front door's own OpenAPI document: every
check on every operation (tests/support/fuzz.py), zero failures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
triton_http = pytest.importorskip("tritonclient.http", reason="tritonclient (dev group) is needed")
from kfloop.processes import free_port, stop_process  # noqa: E402
from serving.common.names import MODEL_NAME  # noqa: E402
from tests.support import testbed  # noqa: E402
from tests.support.fuzz import documented_operations, fuzz  # noqa: E402
from tests.support.stack import wait_for  # noqa: E402

pytestmark = [pytest.mark.serving, pytest.mark.integration]

START_TIMEOUT_S = 240
USER, REQUEST_ID, K = testbed.CLICKER, "oip-acceptance-1", 3
SLATE = ("item_id", "position", "propensity", "score")


@dataclass(frozen=True)
class FrontDoor:
    rest: str  # host:port
    grpc: str


def _start(root: Path, role: str, *args: str) -> subprocess.Popen:
    log = open(root / f"{role}.log", "wb")  # noqa: SIM115 (the process holds it)
    return subprocess.Popen([sys.executable, "-m", f"serving.{role}", *args], stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def front_door(tmp_path_factory) -> Iterator[FrontDoor]:
    root = tmp_path_factory.mktemp("oip")
    bed = testbed.build(root, versions=1, n_items=12)
    config = {
        "predictor": {
            "registry_uri": bed.registry_uri,
            "cache_dir": str(root / "cache"),
            "policy": {"epsilon": 0.0},
            "audit": {"enabled": False},
        },
        "transformer": {"features": bed.features.model_dump(mode="json")},
    }
    (root / "serving.yaml").write_text(yaml.safe_dump(config))
    ports = {name: free_port() for name in ("predictor", "transformer", "grpc")}
    common = ["--config", str(root / "serving.yaml")]
    predictor = _start(root, "predictor", *common, "--port", str(ports["predictor"]))
    transformer = _start(
        root,
        "transformer",
        *common,
        f"--predictor-url=http://127.0.0.1:{ports['predictor']}",
        f"--port={ports['transformer']}",
        f"--grpc_port={ports['grpc']}",
    )
    try:
        for port in (ports["predictor"], ports["transformer"]):
            url = f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready"
            wait_for(lambda url=url: _ready(url), START_TIMEOUT_S, url)
        yield FrontDoor(f"127.0.0.1:{ports['transformer']}", f"127.0.0.1:{ports['grpc']}")
    except TimeoutError:
        logs = "\n".join((root / f"{role}.log").read_text()[-3000:] for role in ("predictor", "transformer"))
        raise AssertionError(logs) from None
    finally:
        for process in (transformer, predictor):
            stop_process(process, 30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tensors(module: Any) -> list[Any]:
    user, k = module.InferInput("user_id", [1], "BYTES"), module.InferInput("k", [1], "INT32")
    user.set_data_from_numpy(np.array([USER.encode()], dtype=np.object_))
    k.set_data_from_numpy(np.array([K], dtype=np.int32))
    return [user, k]


def _slate(outputs: dict[str, Any]) -> list[tuple]:
    items = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(outputs["item_id"]).reshape(-1)]
    positions = np.asarray(outputs["position"]).reshape(-1).tolist()
    propensities = np.round(np.asarray(outputs["propensity"], dtype=float).reshape(-1), 9).tolist()
    scores = np.round(np.asarray(outputs["score"], dtype=float).reshape(-1), 5).tolist()
    return list(zip(items, positions, propensities, scores, strict=True))


def triton_http_slate(door: FrontDoor, outputs: tuple[str, ...] = SLATE) -> tuple[Any, list[tuple]]:
    client = triton_http.InferenceServerClient(door.rest)
    try:
        asked = [triton_http.InferRequestedOutput(name) for name in outputs]  # binary_data=True: its default
        result = client.infer(MODEL_NAME, _tensors(triton_http), outputs=asked, request_id=REQUEST_ID)
    finally:
        client.close()
    return result, _slate({name: result.as_numpy(name) for name in SLATE}) if outputs == SLATE else []


def triton_grpc(door: FrontDoor, inputs: list[dict[str, Any]], **request: Any) -> dict[str, Any]:
    """tritonclient's gRPC client's answer, from a process of its own (tests/support/triton_grpc_call.py)."""
    request = {"url": door.grpc, "model": MODEL_NAME, "inputs": inputs, **request}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.triton_grpc_call", json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


RANKING_INPUTS = [
    {"name": "user_id", "datatype": "BYTES", "data": [USER]},
    {"name": "k", "datatype": "INT32", "data": [K]},
]


def triton_grpc_slate(door: FrontDoor) -> list[tuple]:
    answer = triton_grpc(door, RANKING_INPUTS, request_id=REQUEST_ID, outputs=list(SLATE))
    assert answer["id"] == REQUEST_ID, answer
    return _slate({output["name"]: output["data"] for output in answer["outputs"]})


def _kserve_request() -> Any:
    from kserve import InferInput, InferRequest

    inputs = [InferInput("user_id", [1], "BYTES", [USER]), InferInput("k", [1], "INT32", [K])]
    return InferRequest(MODEL_NAME, inputs, request_id=REQUEST_ID)


def kserve_rest_slate(door: FrontDoor) -> list[tuple]:
    from kserve import InferenceRESTClient, RESTConfig

    async def call() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            return await client.infer(f"http://{door.rest}", _kserve_request(), model_name=MODEL_NAME)
        finally:
            await client.close()

    response = asyncio.run(call())
    return _slate({output.name: output.as_numpy() for output in response.outputs})


def kserve_grpc_slate(door: FrontDoor) -> list[tuple]:
    from kserve import InferenceGRPCClient

    async def call() -> Any:
        client = InferenceGRPCClient(door.grpc, timeout=60)
        try:
            return await client.infer(_kserve_request())
        finally:
            await client.close()

    response = asyncio.run(call())
    assert response.id == REQUEST_ID
    return _slate({output.name: output.as_numpy() for output in response.outputs})


def test_every_standard_client_gets_the_same_slate_for_the_same_request(front_door):
    result, by_triton_http = triton_http_slate(front_door)
    response = result.get_response()
    assert response["id"] == REQUEST_ID and response["parameters"]["request_id"] == REQUEST_ID
    assert all("data" not in output for output in response["outputs"])  # binary, as that client asked
    assert len(by_triton_http) == K and [slot[1] for slot in by_triton_http] == [1, 2, 3]
    assert triton_grpc_slate(front_door) == by_triton_http
    assert kserve_rest_slate(front_door) == by_triton_http
    assert kserve_grpc_slate(front_door) == by_triton_http


def test_requested_outputs_are_honoured_over_rest_and_grpc(front_door):
    result, _ = triton_http_slate(front_door, ("position", "item_id"))
    assert [output["name"] for output in result.get_response()["outputs"]] == ["position", "item_id"]
    assert result.as_numpy("position").tolist() == [1, 2, 3] and result.as_numpy("score") is None
    answer = triton_grpc(front_door, RANKING_INPUTS, outputs=["score"])
    assert [(output["name"], len(output["data"])) for output in answer["outputs"]] == [("score", K)]


def test_grpc_errors_carry_their_status(front_door):
    missing_user = triton_grpc(front_door, RANKING_INPUTS[1:])["error"]
    assert missing_user["status"] == "StatusCode.INVALID_ARGUMENT" and "user_id" in missing_user["message"]
    unknown_output = triton_grpc(front_door, RANKING_INPUTS, outputs=["ctr"])["error"]
    assert unknown_output["status"] == "StatusCode.INVALID_ARGUMENT" and "ctr" in unknown_output["message"]
    unknown_model = triton_grpc(front_door, RANKING_INPUTS, model="nobody")["error"]
    assert unknown_model["status"] == "StatusCode.NOT_FOUND"


SHAPES_UNSTATED = {
    400: "JSON Schema cannot tie a tensor's shape to its data's length, nor say that the `consent` parameter is the "
    "V1 consent object as a JSON string: a request whose shape and data disagree, or whose consent is not that "
    "JSON, is refused with 400 naming the input"
}


@pytest.fixture(scope="module")
def front_door_schema(front_door) -> Any:
    schemathesis = pytest.importorskip("schemathesis")
    return schemathesis.openapi.from_url(f"http://{front_door.rest}/openapi.json")


def test_the_front_door_documents_every_route_it_serves(front_door_schema):
    described = documented_operations(front_door_schema)
    ranking = {("POST", f"/v1/models/{{model_name}}:{verb}") for verb in ("predict", "explain")}
    assert ranking | {("POST", "/v2/models/{model_name}/infer"), ("GET", "/metrics")} <= described
    assert not any("/versions/" in path or "/repository/" in path for _, path in described)


def test_every_check_passes_on_every_operation_of_the_front_door(front_door_schema):
    operations = sorted(documented_operations(front_door_schema))
    failures = {}
    for method, path in operations:  # one server for all: every operation runs, then every failure is shown
        refused = SHAPES_UNSTATED if path.endswith("/infer") else None
        try:
            report = fuzz(front_door_schema, method, path, max_examples=10, max_coverage=80, valid_but_refused=refused)
            assert report.cases > 0
        except Exception as exc:
            failures[f"{method} {path}"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{operation}: {failure}" for operation, failure in failures.items())

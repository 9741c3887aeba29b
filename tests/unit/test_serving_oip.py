"""The Open Inference Protocol on a model server's V2 REST route (the predictor in process, its app as served):
the binary tensor data extension in and out, as tritonclient's HTTP client builds and reads it; requested
outputs (only those, in the order asked, each JSON or binary as asked); an unknown output, an unknown model
and a versioned route, each in the one error shape. The same over the network with standard clients, and on
gRPC, is in tests/integration/test_oip_clients.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
http = pytest.importorskip("tritonclient.http", reason="tritonclient (dev group) is needed")
from starlette.testclient import TestClient  # noqa: E402

from serving.common.names import MODEL_NAME  # noqa: E402
from serving.common.protocol import OUTPUT_TENSORS, Ranking  # noqa: E402
from serving.common.request_bodies import v2_request_json  # noqa: E402
from serving.predictor.config import PolicyConfig  # noqa: E402
from tests.unit.test_error_shape import kserve_app, one_shape  # noqa: E402
from tests.unit.test_serving_support import features, recording_predictor  # noqa: E402

pytestmark = pytest.mark.serving

INFER = f"/v2/models/{MODEL_NAME}/infer"
NUMPY_TYPES = {"BYTES": np.object_, "INT32": np.int32, "INT64": np.int64, "FP64": np.float64, "BOOL": np.bool_}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # greedy: the same request gets the same slate, whichever way it is encoded
    model = recording_predictor(tmp_path_factory.mktemp("spool"), PolicyConfig(epsilon=0.0))
    try:
        with TestClient(kserve_app(model), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        model.stop()


def featured_json(request_id: str) -> dict[str, Any]:
    candidates, user, items = features(12, strong_item=5)
    return v2_request_json(Ranking("u-7", request_id, candidates, 3, user, items), include_features=True)


def triton_inputs(body: dict[str, Any]) -> list[Any]:
    """The JSON request's tensors as tritonclient's InferInputs, binary (its default)."""
    inputs = []
    for tensor in body["inputs"]:
        infer_input = http.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
        data = tensor["data"]
        if tensor["datatype"] == "BYTES":
            data = [str(value).encode() for value in data]
        infer_input.set_data_from_numpy(np.array(data, dtype=NUMPY_TYPES[tensor["datatype"]]))
        inputs.append(infer_input)
    return inputs


def post_binary(client: TestClient, body: dict[str, Any], outputs: list[Any] | None = None) -> Any:
    """A request as tritonclient's HTTP client sends it (JSON header, raw tensors; no content type); its
    answer read as that client reads it."""
    payload, json_size = http.InferenceServerClient.generate_request_body(
        triton_inputs(body), outputs=outputs, request_id=body["id"]
    )
    headers = {"Inference-Header-Content-Length": str(json_size)} if json_size is not None else {}
    answer = client.post(INFER, content=payload, headers=headers)
    assert answer.status_code == 200, answer.text
    header_length = answer.headers.get("inference-header-content-length")
    if header_length is not None:  # binary tensors in the body: typed as the document says
        assert answer.headers["content-type"] == "application/octet-stream"
    return http.InferResult.from_response_body(answer.content, header_length=header_length and int(header_length))


def test_binary_tensors_in_and_out_give_what_json_gives(client):
    body = featured_json("req-binary")
    as_json = client.post(INFER, json=body).json()
    result = post_binary(client, body, [http.InferRequestedOutput(name) for name in OUTPUT_TENSORS])
    answer = result.get_response()
    assert answer["id"] == as_json["id"] == "req-binary" and answer["parameters"] == as_json["parameters"]
    assert all(output["parameters"]["binary_data_size"] > 0 for output in answer["outputs"])
    for output in as_json["outputs"]:
        got = result.as_numpy(output["name"])
        expected = output["data"]
        if output["datatype"] == "BYTES":
            assert [value.decode() for value in got] == expected
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_only_the_requested_outputs_come_back_each_encoded_as_asked(client):
    outputs = [http.InferRequestedOutput("score", binary_data=False), http.InferRequestedOutput("item_id")]
    answer = post_binary(client, featured_json("req-asked"), outputs).get_response()
    assert [output["name"] for output in answer["outputs"]] == ["score", "item_id"]
    score, item_id = answer["outputs"]
    assert len(score["data"]) == 3 and "binary_data_size" not in score.get("parameters", {})
    assert "data" not in item_id and item_id["parameters"]["binary_data_size"] > 0
    body = featured_json("req-asked-json") | {"outputs": [{"name": "position"}]}
    answer = client.post(INFER, json=body)
    assert "inference-header-content-length" not in answer.headers
    assert [(o["name"], o["data"]) for o in answer.json()["outputs"]] == [("position", [1, 2, 3])]
    body["parameters"] = {"binary_data_output": True}
    answer = client.post(INFER, json=body)  # every requested output binary unless it says otherwise
    assert int(answer.headers["inference-header-content-length"]) < len(answer.content)


def test_an_unknown_output_model_or_versioned_route_is_answered_in_the_one_error_shape(client):
    body = featured_json("req-unknown") | {"outputs": [{"name": "item_id"}, {"name": "ctr"}]}
    one_shape(client.post(INFER, json=body), 400, "MalformedRequest", says="unknown output(s) ctr")
    one_shape(client.post("/v2/models/0/infer", json=body), 404, "NotFound", says="0")
    one_shape(client.get("/v2/models/0/ready"), 404, "NotFound", says="0")
    one_shape(client.get("/v2/models/0"), 404, "NotFound", says="0")
    one_shape(client.post(f"/v2/models/{MODEL_NAME}/versions/1/infer", json=body), 404, "NotFound")
    one_shape(client.get(f"/v2/models/{MODEL_NAME}/versions/1/ready"), 404, "NotFound")
    binary_without_its_header = client.post(INFER, content=b"\x00\x01", headers={"content-type": "application/x"})
    one_shape(binary_without_its_header, 400, "MalformedRequest", says="inference-header-content-length")

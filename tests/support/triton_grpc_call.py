"""One ModelInfer call with tritonclient's gRPC client, in a process of its own: tritonclient and KServe each
register the protocol's `inference.*` messages in protobuf's default descriptor pool, so the two cannot be imported
in one process (as a real client, tritonclient runs without KServe).

`python -m tests.support.triton_grpc_call REQUEST_JSON` prints the answer as JSON: {"id", "parameters",
"outputs": [{"name", "datatype", "data"}]} or {"error": {"status", "message"}}. REQUEST_JSON: {"url", "model",
"inputs": [{"name", "datatype", "data"}], "request_id", "outputs": [names] (optional)}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

NUMPY_TYPES = {"BYTES": np.object_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "FP64": np.float64}


def call(request: dict[str, Any]) -> dict[str, Any]:
    import tritonclient.grpc as triton_grpc

    inputs = []
    for tensor in request["inputs"]:
        data = [v.encode() if tensor["datatype"] == "BYTES" else v for v in tensor["data"]]
        infer_input = triton_grpc.InferInput(tensor["name"], [len(data)], tensor["datatype"])
        infer_input.set_data_from_numpy(np.array(data, dtype=NUMPY_TYPES[tensor["datatype"]]))
        inputs.append(infer_input)
    asked = [triton_grpc.InferRequestedOutput(name) for name in request.get("outputs") or ()]
    client = triton_grpc.InferenceServerClient(request["url"])
    try:
        result = client.infer(request["model"], inputs, outputs=asked or None, request_id=request.get("request_id", ""))
    except triton_grpc.InferenceServerException as exc:
        return {"error": {"status": exc.status(), "message": exc.message()}}
    finally:
        client.close()
    response = result.get_response(as_json=True)
    outputs = []
    for output in response["outputs"]:
        values = result.as_numpy(output["name"]).reshape(-1).tolist()
        values = [v.decode() if isinstance(v, bytes) else v for v in values]
        outputs.append({"name": output["name"], "datatype": output["datatype"], "data": values})
    parameters = {name: next(iter(value.values())) for name, value in response.get("parameters", {}).items()}
    return {"id": response.get("id", ""), "parameters": parameters, "outputs": outputs}


if __name__ == "__main__":
    print(json.dumps(call(json.loads(sys.argv[1]))))

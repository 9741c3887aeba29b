"""schemathesis against the predictor's own OpenAPI document (its app in process, as served, the model loaded):
every check on every operation (tests/support/fuzz.py), zero failures. The transformer, the front door, is
fuzzed the same way over the network with a real predictor behind it (tests/integration/test_oip_clients.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
schemathesis = pytest.importorskip("schemathesis")

from serving.predictor.config import PolicyConfig  # noqa: E402
from tests.support.fuzz import documented_operations, fuzz  # noqa: E402
from tests.unit.test_error_shape import kserve_app  # noqa: E402
from tests.unit.test_serving_support import recording_predictor  # noqa: E402

pytestmark = pytest.mark.serving

OPERATIONS = [
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_name}"),
    ("POST", "/v1/models/{model_name}:predict"),
    ("POST", "/v1/models/{model_name}:explain"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models"),
    ("GET", "/v2/models/{model_name}"),
    ("GET", "/v2/models/{model_name}/ready"),
    ("POST", "/v2/models/{model_name}/infer"),
]
FEATURES_UNSTATED = {
    400: "a predictor's request carries the model version's features (names and types from its signature), "
    "which its document does not enumerate: a valid-shaped request without them is refused, naming the feature"
}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory) -> Any:
    model = recording_predictor(Path(tmp_path_factory.mktemp("spool")), PolicyConfig())
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", kserve_app(model))
    finally:
        model.stop()


def test_every_operation_of_the_document_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_check_passes_on_every_operation(api_schema, method, path):
    ranking = path.endswith((":predict", "/infer"))
    report = fuzz(api_schema, method, path, max_examples=15, valid_but_refused=FEATURES_UNSTATED if ranking else None)
    assert report.cases > 0

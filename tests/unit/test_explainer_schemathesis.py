"""schemathesis against the explainer's own OpenAPI document (its model server app in process, as served, the
registry's model loaded): every check on every operation (tests/support/fuzz.py), zero failures."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
schemathesis = pytest.importorskip("schemathesis")

from serving.explainer.config import ExplainerConfig  # noqa: E402
from serving.explainer.engine import ExplanationEngine  # noqa: E402
from serving.explainer.server import RankerExplainer  # noqa: E402
from tests.support.fuzz import documented_operations, fuzz  # noqa: E402
from tests.unit.test_error_shape import kserve_app  # noqa: E402
from tests.unit.test_serving_schemathesis import OPERATIONS  # noqa: E402  (the same model server's routes)
from tests.unit.test_serving_support import contract_registry  # noqa: E402

pytestmark = pytest.mark.serving

NOT_RANKING = {
    400: "the explainer does not rank: :predict and V2 infer, which KServe serves for every model, answer 400 "
    "naming :explain whatever the body"
}
INPUTS_UNSTATED = {
    400: "a recorded decision's inputs are the model version's feature tensors (names and shapes from its "
    "signature), which the document cannot enumerate: other inputs are refused, naming what is wrong",
    422: "likewise: inputs of the right names whose values the model's feed cannot take",
}


@pytest.fixture(scope="module")
def api_schema() -> Any:
    uri, _, root = contract_registry()
    config = ExplainerConfig(registry_uri=uri, cache_dir=root / "cache")
    model = RankerExplainer(config, ExplanationEngine(config))
    model.warm_up()
    return schemathesis.openapi.from_asgi("/openapi.json", kserve_app(model))


def test_every_operation_of_the_document_is_tested_here(api_schema):
    described = documented_operations(api_schema)
    assert described == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_check_passes_on_every_operation(api_schema, method, path):
    refused = NOT_RANKING if path.endswith((":predict", "/infer")) else INPUTS_UNSTATED if ":explain" in path else None
    # an explanation takes ~0.3 s (anchors, attributions): its routes get fewer coverage cases, to stay bounded
    coverage = 40 if refused else 150
    report = fuzz(api_schema, method, path, max_examples=8, max_coverage=coverage, valid_but_refused=refused)
    assert report.cases > 0

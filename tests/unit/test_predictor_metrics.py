"""The predictor's metrics, scraped from its model server's /metrics in-process: every ranking request counted
by version, variant and status (answers, 400s, KServe's own 400, a loading model's 503, a model that raises),
its time, the shown items' scores, the version's creation time, and each input's PSI over the shown items
against the version's baseline.json, equal to a recount from the answers."""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from kfloop.model_contract import BASELINE_FILE
from kfloop.registry import ModelRegistry
from kfloop.registry.registry import Candidate
from serving.common.modelserver import KfloopRESTServer
from serving.common.protocol import Ranking
from serving.common.request_bodies import v2_request_json
from serving.common.versions import resolve
from serving.predictor.config import DriftConfig, PolicyConfig, PredictorAuditConfig, PredictorConfig
from serving.predictor.drift import psi
from serving.predictor.server import RankerPredictor
from tests.support.joiner import metric
from tests.unit.test_serving_support import STRONG, contract_registry, features

pytestmark = pytest.mark.serving

PREDICT = "/v1/models/kfloop-ranker:predict"
CANARY = {"x-kfloop-variant": "canary"}
BASELINE = {
    "format": "kfloop-baseline-v1",
    "rows": 1000,
    "features": {
        "item_feature_0": {"kind": "numeric", "edges": [-1.0, 0.0, 1.0], "fractions": [0.5, 0.5], "missing": 0.0},
        "item_feature_1": {"kind": "categorical", "fractions": {"h0": 0.6, "h1": 0.4}, "missing": 0.0},
        "u_ctr_7d": {"kind": "numeric", "edges": [0.0, 0.1], "fractions": [1.0], "missing": 0.0},
        STRONG: {"kind": "numeric", "edges": [0.0, 0.0], "fractions": [1.0], "missing": 0.0},
    },
}


def model_server_app(*models: Any) -> FastAPI:
    """KServe's app as the model server builds it (its endpoints, our middlewares and handlers), in-process."""
    repository = ModelRepository()
    for model in models:
        repository.update(model)
    app = FastAPI(default_response_class=ORJSONResponse)  # as KServe's own app
    KfloopRESTServer(app, DataPlane(repository), ModelRepositoryExtension(repository), 0).create_application()
    return app


def predictor_config(root: Path, **changes: Any) -> PredictorConfig:
    drift = DriftConfig(window=1000, min_samples=50, update_interval_s=0.05)
    audit = PredictorAuditConfig(enabled=False)
    values = {"cache_dir": root / "cache", "policy": PolicyConfig(seed=5), "audit": audit, "drift": drift}
    return PredictorConfig(**(values | changes))


@pytest.fixture(scope="module")
def version_with_baseline(tmp_path_factory) -> Path:
    """A registry version folder (as the storage initializer leaves it) with a baseline.json."""
    uri, versions, _ = contract_registry()
    folder = tmp_path_factory.mktemp("version") / versions[0]
    shutil.copytree(Path(uri) / versions[0], folder)
    (folder / BASELINE_FILE).write_text(json.dumps(BASELINE))
    return folder


def ranking(request_id: str, strong: int = 2, n: int = 12) -> tuple[dict, dict]:
    candidates, user, items = features(n, strong_item=strong)
    instance = {"user_id": "u-1", "request_id": request_id, "candidates": candidates, "k": 3}
    return {"instances": [instance | {"features": {"user": user, "items": items}}]}, {"user": user, "items": items}


def v2_ranking(request_id: str) -> dict:
    candidates, user, items = features(12)
    return v2_request_json(Ranking("u-1", request_id, candidates, 2, user, items), include_features=True)


def expected_psi(shown: list[dict[str, Any]]) -> dict[str, float]:
    """The PSI of each watched input, recounted from the shown items' own request values."""

    def fractions(codes: list[int], bins: int) -> np.ndarray:
        return np.bincount(codes, minlength=bins) / len(codes)

    category = {"h0": 0, "h1": 1}
    return {
        "item_feature_0": psi(np.array([0.5, 0.5]), fractions([int(s["item_feature_0"] >= 0) for s in shown], 2)),
        "item_feature_1": psi(
            np.array([0.6, 0.4, 0.0]), fractions([category.get(s["item_feature_1"], 2) for s in shown], 3)
        ),
        "u_ctr_7d": psi(np.array([1.0]), fractions([0 for _ in shown], 1)),
        STRONG: psi(np.array([0.0, 1.0, 0.0]), fractions([1 + int(np.sign(s[STRONG])) for s in shown], 3)),
    }


def test_rankings_are_counted_timed_scored_and_their_inputs_drift_as_recounted(monkeypatch, version_with_baseline):
    uri, versions, root = contract_registry()
    model = RankerPredictor(predictor_config(root), resolve(uri, None, version_with_baseline, root / "cache"))
    model.load()
    loading_config = predictor_config(root, model_name="loading", variant="shadow")
    loading = RankerPredictor(loading_config, resolve(uri, versions[1], None, root / "cache"))
    version = model.version
    shown: list[dict[str, Any]] = []
    shown_scores: list[float] = []
    try:
        with TestClient(model_server_app(model, loading), raise_server_exceptions=False) as client:
            # the metrics live on the process-wide registry: other tests may have counted the same labels
            before = client.get("/metrics").text
            for i in range(40):
                body, values = ranking(f"r-{i}", strong=i % 12)
                answer = client.post(PREDICT, json=body, headers=CANARY).json()["predictions"][0]
                for slot in answer["slate"]:
                    index = int(slot["item_id"])
                    shown.append({name: column[index] for name, column in values["items"].items()})
                    shown_scores.append(answer["scores"][slot["item_id"]])
            assert client.post(PREDICT, json={"instances": "nope"}).status_code == 400
            assert (
                client.post(PREDICT, content=b"{not json", headers={"content-type": "application/json"}).status_code
                == 400
            )
            assert (
                client.post(PREDICT, json=ranking("blue")[0], headers={"x-kfloop-variant": "blue"}).status_code == 200
            )
            assert client.post("/v1/models/loading:predict", json=ranking("l")[0]).status_code == 503
            v2 = client.post(
                "/v2/models/kfloop-ranker/infer", json=v2_ranking("v2"), headers={"x-kfloop-variant": "shadow"}
            )
            assert v2.status_code == 200 and v2.json()["parameters"]["variant"] == "shadow"
            monkeypatch.setattr(model.ranker, "score", _broken)
            assert client.post(PREDICT, json=ranking("boom")[0], headers=CANARY).status_code == 500
            text = wait_for_drift(client, model)
    finally:
        model.stop()

    def counted(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    def requests(variant: str, code: str, of: str = version) -> float:
        labels = {"role": "predictor", "model_version": of, "variant": variant, "code": code}
        return counted("kfloop_ranking_requests_total", **labels)

    assert requests("canary", "200") == 40 and requests("canary", "500") == 1
    assert requests("stable", "400") == 2  # ours and KServe's (a body it cannot decode), default variant
    assert requests("other", "200") == 1  # a variant outside the known ones is not a label of its own
    assert requests("shadow", "503", of=versions[1]) == 1
    assert requests("shadow", "200") == 1  # V2
    assert counted("kfloop_predictor_score_count", model_version=version, variant="shadow") == 2
    timed = {"role": "predictor", "model_version": version, "variant": "canary"}
    assert counted("kfloop_ranking_request_seconds_count", **timed) == 41
    assert counted("kfloop_ranking_request_seconds_sum", **timed) > 0
    scored = {"model_version": version, "variant": "canary"}
    assert counted("kfloop_predictor_score_count", **scored) == len(shown) == 120
    assert counted("kfloop_predictor_score_sum", **scored) == pytest.approx(sum(shown_scores), rel=1e-9)
    created = datetime.fromisoformat(model.resolved.card.created_at).timestamp()
    assert metric(text, "kfloop_model_created_timestamp_seconds", **scored) == created
    for feature, value in expected_psi(shown).items():
        drift = {"model_version": version, "variant": "canary", "feature": feature, "method": "psi"}
        assert metric(text, "kfloop_feature_drift", **drift) == pytest.approx(value, abs=1e-9), feature
    assert metric(text, "kfloop_feature_drift", **(drift | {"feature": STRONG})) > 0.2  # the shown strong items


def _broken(feed: Any) -> Any:
    raise RuntimeError("the model broke")


def wait_for_drift(client: TestClient, model: RankerPredictor) -> str:
    """/metrics once the background update (every 0.05 s here) has exported the canary's drift, and after one
    more update now, so that every request's items are in it."""
    labels = {"model_version": model.version, "variant": "canary", "feature": "item_feature_0", "method": "psi"}
    deadline = time.monotonic() + 30
    while sample(client.get("/metrics").text, "kfloop_feature_drift", **labels) is None:
        assert time.monotonic() < deadline, "the background update never exported the drift"
        time.sleep(0.05)
    model.metrics.update_drift()
    return client.get("/metrics").text


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from /metrics text, None if absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


def test_a_version_without_a_baseline_exports_no_drift_and_says_so_once(caplog):
    uri, versions, root = contract_registry()
    model = RankerPredictor(predictor_config(root), resolve(uri, versions[1], None, root / "cache"))
    assert model.resolved.baseline_path is None
    with caplog.at_level(logging.INFO, logger="serving.predictor.metrics"):
        model.load()
        try:
            with TestClient(model_server_app(model)) as client:
                for i in range(30):
                    assert client.post(PREDICT, json=ranking(f"n-{i}")[0]).status_code == 200
                model.metrics.update_drift()
                text = client.get("/metrics").text
        finally:
            model.stop()
    assert f'model_version="{versions[1]}"' in text  # it is measured ...
    assert not [line for line in text.splitlines() if line.startswith("kfloop_feature_drift{") and versions[1] in line]
    said = [r for r in caplog.records if "has no baseline.json" in r.getMessage()]
    assert len(said) == 1 and versions[1] in said[0].getMessage()


def test_a_registered_versions_baseline_is_found_and_a_bad_one_leaves_serving_up(tmp_path, caplog):
    uri, versions, root = contract_registry()
    registry = ModelRegistry(tmp_path / "registry")
    source = ModelRegistry(uri)
    bad = tmp_path / BASELINE_FILE
    bad.write_text('{"format": "kfloop-baseline-v1", "rows": 1, "features": {"x": {"kind": "ordinal"}}}')
    candidate = Candidate(
        data_version="d",
        schema_version="s",
        code_version="c",
        parameters={},
        blessing=source.card(versions[0]).blessing,
        data={},
        metrics={},
        ope={},
    )
    model_dir = source.local_copy(versions[0], "model", tmp_path)
    version = registry.register(candidate, model_dir=model_dir, files={BASELINE_FILE: bad}).version
    resolved = resolve(registry.uri, version, None, tmp_path / "cache")
    assert resolved.baseline_path is not None and resolved.baseline_path.read_text() == bad.read_text()
    model = RankerPredictor(predictor_config(root), resolved)
    with caplog.at_level(logging.ERROR, logger="serving.predictor.metrics"):
        model.load()
    model.stop()
    assert model.ready is False and model.metrics.binner is None
    (said,) = [r.getMessage() for r in caplog.records]
    assert "no input drift is exported" in said and "features.x" in said

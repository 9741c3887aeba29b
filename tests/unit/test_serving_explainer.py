"""Explanations with Alibi 0.9.4, in-process: Integrated Gradients through the numeric sub-model (attributions add
up to the score's change from the baseline, and find the feature the model weighs), AnchorTabular rules a
person can read, on demand for a stored decision through the audit API, and the explainer service's forms."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kfloop.audit import Decision, explain_decision, verify_store
from kfloop.audit.record import Candidate, PolicyInfo
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.errors import KfloopError, MalformedRequest
from serving.common.model_io import SavedRanker
from serving.common.versions import resolve
from serving.explainer import audit as audit_factory
from serving.explainer.config import ExplainerConfig
from serving.explainer.engine import EXPLAINER_NAME, ExplanationEngine, readable
from serving.explainer.server import RankerExplainer
from serving.predictor.decisions import decision_inputs
from tests.unit.serving_junk import explain_bodies, json_junk
from tests.unit.test_serving_support import STRONG, contract_registry, features

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def registry():
    return contract_registry()


@pytest.fixture(scope="module")
def engine(registry) -> ExplanationEngine:
    uri, _, root = registry
    return ExplanationEngine(ExplainerConfig(registry_uri=uri, cache_dir=root / "cache"))


@pytest.fixture(scope="module")
def recorded(registry):
    """Inputs as the predictor records them: 20 candidates, the user clicked item 4 six times this week."""
    uri, versions, root = registry
    ranker = SavedRanker(resolve(uri, versions[0], None, root / "cache").model_path)
    candidates, user, items = features(20, strong_item=4)
    return decision_inputs(candidates, 3, ranker.feed(candidates, user, items))


def test_attributions_add_up_and_name_the_feature_the_model_weighs(registry, engine, recorded):
    _, versions, _ = registry
    explanation = engine.explain(versions[0], recorded, None)  # no slate: the top 3 by score
    assert explanation["explainer"] == EXPLAINER_NAME and explanation["model_version"] == versions[0]
    top = explanation["items"][0]
    assert top["item_id"] == "4" and top["rank_by_score"] == 1 and top["in_top_k_by_score"]
    ig = top["integrated_gradients"]
    assert ig["top"][0]["feature"] == STRONG and ig["top"][0]["value"] == 6 and ig["top"][0]["attribution"] > 0
    assert ig["top"][0]["label"] == "your clicks on this item in the last 7d"
    # completeness: the attributions share out the score's change from the baseline
    assert ig["sum_of_attributions"] == pytest.approx(ig["score"] - ig["baseline_score"], abs=0.02)
    assert ig["score"] == pytest.approx(top["score"], abs=1e-5)
    assert set(ig["by_feature"]) >= {STRONG, "item_id", "item_feature_1", "u_clicks_7d"}


def test_anchors_are_rules_a_person_can_read(registry, engine, recorded):
    _, versions, _ = registry
    explanation = engine.explain(versions[0], recorded, None)
    anchor = explanation["items"][0]["anchor"]
    assert anchor["explains"] == "in_top_k"
    assert any(STRONG in condition for condition in anchor["conditions"]), anchor
    assert (
        anchor["readable"].startswith("shown because ")
        and "your clicks on this item in the last 7d" in anchor["readable"]
    )
    assert anchor["precision"] >= 0.9 and 0 < anchor["coverage"] <= 1


def test_an_item_shown_by_exploration_is_said_to_be(registry, engine, recorded):
    _, versions, _ = registry
    scores = engine.explain(versions[0], recorded, None)
    low = next(i for i in recorded["candidates"] if i not in {x["item_id"] for x in scores["items"]})
    explanation = engine.explain(versions[0], recorded, ["4", low])
    explored = explanation["items"][1]
    assert explored["item_id"] == low and not explored["in_top_k_by_score"] and explored["position"] == 2
    assert explored["anchor"]["explains"] == "not_in_top_k"
    assert explored["anchor"]["readable"].startswith("shown by exploration")
    with pytest.raises(MalformedRequest, match="not among the decision's candidates"):
        engine.explain(versions[0], recorded, ["no-such-item"])


def test_a_past_decision_is_explained_on_demand_from_its_stored_inputs(registry, engine, recorded, tmp_path):
    _, versions, _ = registry
    decision = Decision(
        request_id="req-explain-1",
        ts=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        model_version=versions[0],
        variant="stable",
        user_id="u-7",
        inputs=recorded,
        candidates=[
            Candidate(item_id="9", position=1, score=0.4, propensity=0.0125),
            Candidate(item_id="4", position=2, score=0.9, propensity=0.05),
        ],
        policy=PolicyInfo(name="epsilon_greedy", epsilon=0.1),
    )
    with SqliteStore(tmp_path / "audit.db") as store:
        store.append([decision])
        explanation, appended = explain_decision(store, "req-explain-1", engine)
        assert appended.status == "accepted"
        assert explanation.trigger == "on_demand" and explanation.explainer == EXPLAINER_NAME
        assert explanation.model_version == versions[0] and explanation.decision_hash
        assert [i["item_id"] for i in explanation.explanation["items"]] == ["9", "4"]
        # a record without ranks and draws (older ones): recomputed from its inputs, and said to be
        first, second = explanation.explanation["items"]
        assert first["slot_source"] == second["slot_source"] == "recomputed"
        assert first["draw"] == "exploration" and second["draw"] == "greedy"  # 4 is the best by score
        assert "inferred from the recomputed scores" in first["anchor"]["readable"]
        assert verify_store(store).ok


def test_an_explainer_export_that_does_not_reproduce_the_scores_is_refused(registry, tmp_path, recorded):
    uri, versions, _ = registry
    copy = tmp_path / "registry"
    shutil.copytree(uri, copy)
    # version 0 with version 1's explainer export: same layout, other weights
    shutil.rmtree(copy / versions[0] / "explainer")
    shutil.copytree(copy / versions[1] / "explainer", copy / versions[0] / "explainer")
    broken = ExplanationEngine(ExplainerConfig(registry_uri=str(copy), cache_dir=tmp_path / "cache"))
    with pytest.raises(MalformedRequest, match="does not reproduce its scores"):
        broken.explain(versions[0], recorded, None)


def test_the_explainer_service_takes_a_recorded_decision_or_the_transformers_request(registry, engine, recorded):
    uri, versions, _ = registry
    model = RankerExplainer(ExplainerConfig(registry_uri=uri), engine)
    model.warm_up()
    assert model.ready
    decision_form = {"model_version": versions[0], "inputs": recorded, "slate": ["4"]}
    candidates, user, items = features(20, strong_item=4)
    transformer_form = {"user_id": "u", "candidates": candidates, "k": 2, "features": {"user": user, "items": items}}
    answer = asyncio.run(model.explain({"instances": [decision_form, transformer_form]}))
    first, second = answer["explanations"]
    assert [i["item_id"] for i in first["items"]] == ["4"]
    assert second["model_version"] == versions[1] and second["k"] == 2  # the default: latest deployable
    with pytest.raises(MalformedRequest, match="inputs"):
        asyncio.run(model.explain({"instances": [{"user_id": "u"}]}))
    no_slate = {"model_version": versions[0], "inputs": {**recorded, "k": "3"}}
    with pytest.raises(MalformedRequest, match=r"inputs\.k must be a whole number"):
        asyncio.run(model.explain({"instances": [no_slate]}))
    # inputs copied from the audit store may name their item context instead of holding it
    named = {"model_version": versions[0], "inputs": {"k": 3, "item_context": "ab" * 32}}
    with pytest.raises(MalformedRequest, match="kfloop audit explain REQUEST_ID"):
        asyncio.run(model.explain({"instances": [named]}))


def test_the_audit_commands_explainer_reads_the_serving_config(registry, tmp_path, monkeypatch):
    uri, _, _ = registry
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"explainer": {"registry_uri": uri}}))
    monkeypatch.setenv(audit_factory.CONFIG_ENV, str(path))
    explainer = audit_factory.explainer()
    assert explainer.name == EXPLAINER_NAME and explainer.config.registry_uri == uri


def test_feature_names_read_as_words():
    assert readable("ui_clicks_7d") == "your clicks on this item in the last 7d"
    assert readable("u_ctr_1h") == "your click rate in the last 1h"
    assert readable("item_feature_2") == "item feature 2"
    assert readable("item_id") == "item id"


def explained_or_refused(model: RankerExplainer, body) -> None:
    """An answer, or a client error that says what is wrong (400; 404 for a version not in the registry)."""
    try:
        answer = asyncio.run(model.explain(body))
    except KfloopError as exc:
        assert exc.http_status in (400, 422) or (exc.http_status == 404 and "not in the registry" in exc.message), exc
        return
    assert answer["explanations"]


@settings(max_examples=150, deadline=None)
@given(body=explain_bodies)
def test_no_request_body_crashes_the_explainer(registry, engine, body):
    explained_or_refused(RankerExplainer(ExplainerConfig(registry_uri=registry[0]), engine), body)


SPOILABLE_INPUTS = ["candidates", "k", "user", "items", "items_mostly", "item_context"]


@settings(max_examples=40, deadline=None)
@given(where=st.sampled_from(["model_version", "slate", *SPOILABLE_INPUTS]), value=json_junk)
def test_a_recorded_decision_with_one_field_spoiled_is_explained_or_refused(registry, engine, recorded, where, value):
    _, versions, _ = registry
    instance = {"model_version": versions[0], "inputs": dict(recorded), "slate": ["4"]}
    if where in ("model_version", "slate"):
        instance[where] = value
    else:
        instance["inputs"][where] = value
    explained_or_refused(RankerExplainer(ExplainerConfig(registry_uri=registry[0]), engine), {"instances": [instance]})

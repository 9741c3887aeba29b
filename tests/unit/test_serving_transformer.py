"""The transformer's preprocessing on a real (SQLite) Feast store: the user's and candidates' features through
the fast online reader, the whole catalog by default, cold start for unknown users and items."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from hypothesis import given, settings
from kserve import InferInput, InferRequest

from kfloop.errors import MalformedRequest, NotReady
from serving.common.protocol import Ranking
from serving.common.request_bodies import expand_mostly
from serving.transformer.config import TransformerConfig
from serving.transformer.features import OnlineFeatures
from serving.transformer.server import RankerTransformer
from tests.support import testbed
from tests.unit.serving_junk import ranking_bodies

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    config, items = testbed.build_features(tmp_path_factory.mktemp("testbed"), n_items=12)
    features = OnlineFeatures(config)
    yield config, items, features
    features.close()


def test_a_known_user_gets_their_aggregates_and_every_catalog_item_its_context(store):
    _, items, features = store
    assert features.catalog == items == [str(i) for i in range(12)]
    ranking = features.featurize(Ranking(testbed.CLICKER, "r", None, None))
    assert ranking.candidates == items
    sent = ranking.item_features_mostly["ui_clicks_7d"]
    assert sent == {"value": 0, "except": [[items.index(testbed.CLICKED_ITEM), 4]]}  # the default and what was read
    clicks = dict(zip(ranking.candidates, expand_mostly("ui_clicks_7d", sent, len(items)), strict=True))
    assert clicks[testbed.CLICKED_ITEM] == 4 and sum(clicks.values()) == 4
    assert "ui_clicks_7d" not in ranking.item_features
    assert ranking.user_features["u_clicks_7d"] == 4
    assert ranking.item_features["item_feature_1"][:3] == ["h0", "h1", "h2"]


def test_unknown_users_and_items_get_the_cold_start_defaults(store):
    _, _, features = store
    ranking = features.featurize(Ranking("u-never-seen", "r", ["1", "no-such-item"], None))
    assert ranking.user_features["u_clicks_7d"] == 0 and ranking.user_features["u_ctr_7d"] == pytest.approx(0.02)
    assert ranking.user_features["user_feature_0"] == "__unknown__"
    assert ranking.item_features["item_feature_1"] == ["h1", "__unknown__"]


def test_preprocess_adds_features_in_the_protocol_the_client_used(store):
    config, items, features = store
    model = RankerTransformer(TransformerConfig(features=config, max_candidates=20), features, "http://unused")
    forward = asyncio.run(model.preprocess({"instances": [{"user_id": testbed.BROWSER, "k": 2}]}, {}))
    (instance,) = forward.body["instances"]
    assert not forward.v2 and instance["candidates"] == items and instance["k"] == 2
    assert set(instance["features"]) == {"user", "items", "items_mostly"}
    assert len(instance["features"]["items"]["item_feature_1"]) == 12
    assert instance["features"]["items_mostly"]["ui_clicks_7d"]["value"] == 0
    request = InferRequest("kfloop-ranker", [InferInput("user_id", [1], "BYTES", ["u-x"])], request_id="r-1")
    forward = asyncio.run(model.preprocess(request, {}))
    assert forward.v2 and forward.body["id"] == "r-1"
    shapes = {i["name"]: i["shape"] for i in forward.body["inputs"]}
    assert shapes["candidates"] == [12] and shapes["u_clicks_1h"] == [1] and shapes["ui_ctr_7d"] == [12]


def test_bad_requests_are_400_and_an_empty_catalog_is_not_ready(store):
    config, _, features = store
    model = RankerTransformer(TransformerConfig(features=config, max_candidates=3), features, "http://unused")
    with pytest.raises(MalformedRequest, match="at most 3 candidates"):
        asyncio.run(model.preprocess({"instances": [{"user_id": "u", "candidates": ["1", "2", "3", "4"]}]}, {}))
    with pytest.raises(MalformedRequest, match="user_id"):
        asyncio.run(model.preprocess({"instances": [{"candidates": ["1"]}]}, {}))
    catalog, features.catalog = features.catalog, []
    try:
        with pytest.raises(NotReady):
            asyncio.run(model.preprocess({"instances": [{"user_id": "u"}]}, {}))
    finally:
        features.catalog = catalog


def test_the_role_entry_points_refuse_a_bad_config_with_exit_2_naming_it(tmp_path, capsys):
    """One line on stderr, exit code 2, nothing served: the transformer without a predictor to call, a
    field out of range in the explainer's section."""
    from serving.explainer import main as explainer_main
    from serving.transformer import main as transformer_main

    config = tmp_path / "serving.yaml"
    config.write_text("transformer: {}\n")
    assert transformer_main.main(["--config", str(config)]) == 2
    assert "transformer: no predictor" in capsys.readouterr().err
    assert explainer_main.main(["--config", str(config), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explainer: ") and "http_port" in err


@settings(max_examples=150, deadline=None)
@given(body=ranking_bodies)
def test_no_request_body_crashes_the_transformer(store, body):
    config, _, features = store
    model = RankerTransformer(TransformerConfig(features=config, max_candidates=20), features, "http://unused")
    try:
        forward = asyncio.run(model.preprocess(body, {}))
    except MalformedRequest:  # a 400 naming the field
        return
    assert forward.body["instances"]

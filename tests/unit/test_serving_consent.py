"""Consent on a ranking request: parsed as an event's (V1 field, V2 parameter as a JSON string), malformed is a
400 naming the field; without personalization the transformer reads none of the user's features and the
predictor records the decision saying so, and counts it, instead of logging impressions."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from kserve import InferInput, InferRequest
from prometheus_client import REGISTRY

from kfloop.errors import MalformedRequest
from kfloop.events.schema import Consent
from kfloop.processes import free_port
from serving.common.consent import ConsentDefault
from serving.common.protocol import parse_v1, parse_v2
from serving.common.request_bodies import v2_request_json
from serving.common.versions import resolve
from serving.predictor.config import PolicyConfig, PredictorAuditConfig, PredictorConfig
from serving.predictor.server import RankerPredictor
from serving.transformer.config import TransformerConfig
from serving.transformer.features import OnlineFeatures
from serving.transformer.server import RankerTransformer
from tests.support import testbed
from tests.unit.test_serving_api import _pydantic
from tests.unit.test_serving_predictor import spooled, v1_body
from tests.unit.test_serving_support import contract_registry

pytestmark = pytest.mark.serving

NO = {"personalization": False, "analytics": True}


def v1(consent) -> dict:
    return {"instances": [{"user_id": "u-1", "consent": consent}]}


def test_a_v1_instance_carries_consent_as_an_event_does():
    (ranking,) = parse_v1(v1(NO), max_instances=1, with_features=False)
    assert ranking.consent == Consent(personalization=False, analytics=True)
    (ranking,) = parse_v1({"instances": [{"user_id": "u-1"}]}, max_instances=1, with_features=False)
    assert ranking.consent is None  # the config's default applies


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        ({"personalization": "maybe"}, "instances[0].consent.personalization"),
        ({"analytics": True}, "instances[0].consent.personalization"),
        ({"personalization": True, "marketing": True}, "instances[0].consent.marketing"),
        ("yes", "instances[0].consent"),
    ],
)
def test_malformed_consent_in_v1_is_a_400_naming_the_field(consent, field):
    with pytest.raises(MalformedRequest) as info:
        parse_v1(v1(consent), max_instances=1, with_features=False)
    assert field in info.value.message and info.value.details[0]["field"] == field


def v2(parameters: dict | None) -> InferRequest:
    body = {"id": "r-1", "inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u-1"]}]}
    if parameters is not None:
        body["parameters"] = parameters
    return InferRequest.from_inference_request(_pydantic(body), "kfloop-ranker")


def test_a_v2_request_carries_consent_as_a_json_string_parameter_and_passes_it_on():
    ranking = parse_v2(v2({"consent": '{"personalization": false, "analytics": true}'}), with_features=False)
    assert ranking.consent == Consent(personalization=False, analytics=True)
    assert parse_v2(v2(None), with_features=False).consent is None
    ranking.candidates = ["1"]
    forwarded = v2_request_json(ranking, include_features=True)  # the transformer's request to the predictor
    assert parse_v2(InferRequest.from_inference_request(_pydantic(forwarded), "m"), with_features=True).consent == (
        ranking.consent
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("{not json", "parameters.consent"),
        ('["personalization"]', "parameters.consent"),
        ('{"analytics": true}', "parameters.consent.personalization"),
        ('{"personalization": "perhaps"}', "parameters.consent.personalization"),
        (1, "parameters.consent"),
    ],
)
def test_malformed_consent_in_v2_is_a_400_naming_the_field(value, field):
    with pytest.raises(MalformedRequest, match=field.replace(".", r"\.")):
        parse_v2(v2({"consent": value}), with_features=False)


# -- the transformer reads nothing of the user's without consent ----------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    config, _ = testbed.build_features(tmp_path_factory.mktemp("testbed"), n_items=12)
    features = OnlineFeatures(config)
    yield config, features
    features.close()


def forwarded(store, body: dict, default: ConsentDefault | None = None) -> dict:
    config, features = store
    transformer_config = TransformerConfig(features=config, consent_default=default or ConsentDefault())
    model = RankerTransformer(transformer_config, features, "http://unused")
    (instance,) = asyncio.run(model.preprocess(body, {})).body["instances"]
    return instance


def test_without_personalization_consent_the_users_features_are_not_read(store):
    clicker = {"user_id": testbed.CLICKER}
    personal = forwarded(store, {"instances": [clicker]})
    assert personal["features"]["user"]["u_clicks_7d"] == 4 and personal["consent"]["personalization"]
    anonymous = forwarded(store, {"instances": [clicker | {"consent": NO}]})
    assert anonymous["features"]["user"]["u_clicks_7d"] == 0  # the cold-start default, as for a stranger
    assert all(not column["except"] for column in anonymous["features"]["items_mostly"].values())
    assert anonymous["features"]["items"] == personal["features"]["items"]  # item context is nobody's
    assert anonymous["consent"] == NO  # the predictor acts on the same consent
    by_default = forwarded(store, {"instances": [clicker]}, ConsentDefault(personalization=False))
    assert by_default["features"] == anonymous["features"] and not by_default["consent"]["personalization"]


def test_malformed_consent_is_a_400_from_the_transformer(store):
    with pytest.raises(MalformedRequest, match=r"instances\[0\]\.consent\.personalization"):
        forwarded(store, v1({"personalization": None}))


# -- the predictor records it, and counts the slates it logs no impressions for ---------------------------


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    uri, versions, root = contract_registry()
    spool_dir = tmp_path_factory.mktemp("spool")
    audit = PredictorAuditConfig.model_validate(
        {"spool": {"dir": str(spool_dir), "sink_url": f"http://127.0.0.1:{free_port()}"}, "drain_on_stop_s": 0}
    )
    config = PredictorConfig(registry_uri=uri, cache_dir=root / "cache", policy=PolicyConfig(seed=3), audit=audit)
    model = RankerPredictor(config, resolve(uri, versions[0], None, config.cache_dir))
    model.load()
    yield model, spool_dir / versions[0]
    model.stop()


def without_consent_count(model: RankerPredictor) -> float:
    labels = {"variant": "stable", "model_version": model.version}
    return REGISTRY.get_sample_value("kfloop_predictor_slates_without_consent_total", labels) or 0.0


def test_a_slate_without_consent_is_explored_recorded_and_counted(predictor):
    model, spool_dir = predictor
    before = without_consent_count(model)
    (answer,) = asyncio.run(model.predict(v1_body("req-no", consent=NO), {}))["predictions"]
    assert [s["position"] for s in answer["slate"]] == [1, 2, 3] and all(s["propensity"] for s in answer["slate"])
    assert spooled(spool_dir)["req-no"]["consent"] == NO
    assert without_consent_count(model) == before + 1
    asyncio.run(model.predict(v1_body("req-yes"), {}))  # no consent given: the default (personalization)
    assert spooled(spool_dir)["req-yes"]["consent"] == {"personalization": True, "analytics": False}
    assert without_consent_count(model) == before + 1
    with pytest.raises(MalformedRequest, match=r"instances\[0\]\.consent\.personalization"):
        asyncio.run(model.predict(v1_body("req-bad", consent={"analytics": False}), {}))


def test_a_v2_ranking_without_consent_is_recorded_so(predictor):
    model, spool_dir = predictor
    body = v1_body("req-v2-no")["instances"][0]
    inputs = [
        InferInput("user_id", [1], "BYTES", [body["user_id"]]),
        InferInput("candidates", [len(body["candidates"])], "BYTES", body["candidates"]),
        *(
            InferInput(name, [1], "BYTES" if isinstance(v, str) else "FP64", [v])
            for name, v in body["features"]["user"].items()
        ),
    ]
    for name, column in body["features"]["items"].items():
        kind = "BYTES" if isinstance(column[0], str) else ("INT64" if isinstance(column[0], int) else "FP64")
        inputs.append(InferInput(name, [len(column)], kind, column))
    request = InferRequest(
        "kfloop-ranker", inputs, request_id="req-v2-no", parameters={"consent": '{"personalization": false}'}
    )
    asyncio.run(model.predict(request, {}))
    assert spooled(spool_dir)["req-v2-no"]["consent"] == {"personalization": False, "analytics": False}

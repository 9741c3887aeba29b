"""The ranking API: V1 and V2 requests parsed (400 with the reason otherwise), responses shaped as documented."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving environment (KServe) is needed")
from kserve import InferInput, InferRequest

from kfloop.errors import MalformedRequest
from serving.common.protocol import OUTPUT_TENSORS, RankResult, parse_v1, parse_v2
from serving.common.request_bodies import expand_mostly, feature_json, v2_request_json

pytestmark = pytest.mark.serving


def test_a_v1_instance_needs_only_a_user_and_gets_a_request_id():
    (ranking,) = parse_v1({"instances": [{"user_id": "u-1"}]}, max_instances=4, with_features=False)
    assert ranking.user_id == "u-1" and ranking.candidates is None and ranking.k is None
    assert len(ranking.request_id) == 32
    (ranking,) = parse_v1(
        {"instances": [{"user_id": "u-1", "candidates": ["3", "17"], "k": 2, "request_id": "r-9"}]},
        max_instances=4,
        with_features=False,
    )
    assert (ranking.candidates, ranking.k, ranking.request_id) == (["3", "17"], 2, "r-9")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([{"user_id": "u"}], "JSON object"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [{"user_id": "u"}], "extra": 1}, "unknown top-level field"),
        ({"instances": ["u-1"]}, "instances[0] must be a JSON object"),
        ({"instances": [{"user_id": "jane@example.com"}]}, "instances[0].user_id: Value error, looks like an email"),
        ({"instances": [{"user_id": "u", "k": 0}]}, "instances[0].k"),
        ({"instances": [{"user_id": "u", "candidates": ["1", "1"]}]}, "must not repeat"),
        ({"instances": [{"user_id": "u", "candidates": []}]}, "instances[0].candidates"),
        ({"instances": [{"user_id": "u", "colour": "red"}]}, "instances[0].colour: Extra inputs"),
        ({"instances": [{"user_id": "u"}] * 5}, "at most 4 instances"),
    ],
)
def test_a_malformed_v1_request_is_refused_with_the_reason(body, reason):
    with pytest.raises(MalformedRequest) as caught:
        parse_v1(body, max_instances=4, with_features=False)
    assert caught.value.http_status == 400
    assert reason in caught.value.message


def test_the_transformers_form_carries_features_and_needs_candidates():
    body = {
        "instances": [
            {
                "user_id": "u",
                "request_id": "r",
                "candidates": ["1", "2"],
                "features": {"user": {"u_clicks_1h": 2}, "items": {"ui_clicks_7d": [0, 3]}},
            }
        ]
    }
    (ranking,) = parse_v1(body, max_instances=4, with_features=True)
    assert ranking.user_features == {"u_clicks_1h": 2} and ranking.item_features == {"ui_clicks_7d": [0, 3]}
    assert feature_json(ranking)["features"] == body["instances"][0]["features"]
    del body["instances"][0]["candidates"]
    with pytest.raises(MalformedRequest, match="candidates: required"):
        parse_v1(body, max_instances=4, with_features=True)
    with pytest.raises(MalformedRequest, match="must be a list"):
        parse_v1(
            {"instances": [{"user_id": "u", "candidates": ["1"], "features": {"user": {}, "items": {"a": 1}}}]},
            max_instances=4,
            with_features=True,
        )


def test_per_candidate_features_can_come_as_one_value_and_the_exceptions():
    mostly = {"ui_clicks_7d": {"value": 0, "except": [[1, 3]]}}
    instance = {"user_id": "u", "candidates": ["1", "2", "3"], "features": {"user": {}, "items": {}}}
    instance["features"]["items_mostly"] = mostly
    (ranking,) = parse_v1({"instances": [instance]}, max_instances=1, with_features=True)
    assert ranking.item_features_mostly == mostly and feature_json(ranking)["features"]["items_mostly"] == mostly
    assert expand_mostly("ui_clicks_7d", mostly["ui_clicks_7d"], 3) == [0, 3, 0]
    tensors = {i["name"]: i["data"] for i in v2_request_json(ranking, include_features=True)["inputs"]}
    assert tensors["ui_clicks_7d"] == [0, 3, 0]  # V2 carries tensors: expanded


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ([0, 0, 0], "items_mostly entries are"),
        ({"value": 0}, "items_mostly entries are"),
        ({"value": 0, "except": [[3, 1]]}, "not [candidate index below 3, value]"),
        ({"value": 0, "except": [[-1, 1]]}, "not [candidate index below 3, value]"),
        ({"value": 0, "except": [[True, 1]]}, "not [candidate index below 3, value]"),
        ({"value": 0, "except": [[0, 1, 2]]}, "not [candidate index below 3, value]"),
    ],
)
def test_a_bad_compact_feature_is_a_400_naming_it(entry, reason):
    with pytest.raises(MalformedRequest, match=r"feature ui_clicks_7d: .*" + re.escape(reason)):
        expand_mostly("ui_clicks_7d", entry, 3)


def test_a_feature_in_both_forms_is_refused():
    features = {"user": {}, "items": {"a": [1]}, "items_mostly": {"a": {"value": 0, "except": []}}}
    with pytest.raises(MalformedRequest, match="a in both items and items_mostly"):
        parse_v1(
            {"instances": [{"user_id": "u", "candidates": ["1"], "features": features}]},
            max_instances=1,
            with_features=True,
        )


def _request(*inputs: InferInput, request_id: str | None = "r-2") -> InferRequest:
    return InferRequest("kfloop-ranker", list(inputs), request_id=request_id)


def test_a_v2_request_names_the_user_and_optionally_candidates_and_k():
    ranking = parse_v2(
        _request(
            InferInput("user_id", [1], "BYTES", ["u-1"]),
            InferInput("candidates", [3], "BYTES", ["3", "17", "52"]),
            InferInput("k", [1], "INT32", [2]),
        ),
        with_features=False,
    )
    assert (ranking.user_id, ranking.candidates, ranking.k, ranking.request_id) == ("u-1", ["3", "17", "52"], 2, "r-2")
    with pytest.raises(MalformedRequest, match="user_id"):
        parse_v2(_request(InferInput("candidates", [1], "BYTES", ["3"])), with_features=False)
    with pytest.raises(MalformedRequest, match="exactly one id"):
        parse_v2(_request(InferInput("user_id", [2], "BYTES", ["a", "b"])), with_features=False)


def test_v2_feature_tensors_are_per_user_with_shape_1_and_per_candidate_with_shape_n():
    body = {
        "id": "r",
        "inputs": [
            {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u"]},
            {"name": "candidates", "shape": [2], "datatype": "BYTES", "data": ["1", "2"]},
            {"name": "u_clicks_1h", "shape": [1], "datatype": "INT64", "data": [4]},
            {"name": "ui_ctr_7d", "shape": [2], "datatype": "FP64", "data": [0.1, 0.2]},
            {"name": "item_feature_1", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ],
    }
    request = InferRequest.from_inference_request(_pydantic(body), "kfloop-ranker")
    ranking = parse_v2(request, with_features=True)
    assert ranking.user_features == {"u_clicks_1h": 4}
    assert ranking.item_features == {"ui_ctr_7d": [0.1, 0.2], "item_feature_1": ["a", "b"]}
    body["inputs"][3] = {"name": "ui_ctr_7d", "shape": [3], "datatype": "FP64", "data": [0.1, 0.2, 0.3]}
    with pytest.raises(MalformedRequest, match=r"shape \[1\] or \[2\]"):
        parse_v2(InferRequest.from_inference_request(_pydantic(body), "kfloop-ranker"), with_features=True)


def test_the_transformers_v2_request_round_trips():
    body = {"instances": [{"user_id": "u", "request_id": "r", "candidates": ["1", "2"], "k": 1}]}
    (ranking,) = parse_v1(body, max_instances=1, with_features=False)
    ranking.user_features = {"u_clicks_1h": 4, "user_feature_0": "x"}
    ranking.item_features = {"ui_ctr_7d": [0.1, 0.2]}
    request = InferRequest.from_inference_request(_pydantic(v2_request_json(ranking, include_features=True)), "m")
    parsed = parse_v2(request, with_features=True)
    assert (parsed.user_id, parsed.candidates, parsed.k, parsed.request_id) == ("u", ["1", "2"], 1, "r")
    assert parsed.user_features == ranking.user_features and parsed.item_features == ranking.item_features


def test_a_result_has_the_documented_v1_and_v2_shapes():
    result = RankResult(
        request_id="r",
        model_version="v1",
        variant="canary",
        candidates=["a", "b", "c"],
        scores=np.array([0.2, 0.9, 0.5], dtype=np.float32),
        slate=[1, 2],
        propensities=[0.9, 0.45],
    )
    v1 = result.v1_json()
    assert v1["slate"] == [
        {"item_id": "b", "position": 1, "score": pytest.approx(0.9), "propensity": 0.9},
        {"item_id": "c", "position": 2, "score": pytest.approx(0.5), "propensity": 0.45},
    ]
    assert set(v1) == {"request_id", "model_version", "variant", "slate", "scores"} and len(v1["scores"]) == 3
    outputs = {o["name"]: o for o in result.v2_outputs()}
    assert {name: o["datatype"] for name, o in outputs.items()} == OUTPUT_TENSORS
    assert outputs["item_id"]["data"] == ["b", "c"] and outputs["position"]["data"] == [1, 2]
    assert outputs["candidate_id"]["shape"] == [3]
    assert result.v2_parameters() == {"model_version": "v1", "variant": "canary", "request_id": "r"}


def _pydantic(body: dict):
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    return InferenceRequest.model_validate(body)

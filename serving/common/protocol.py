"""The ranking API, V1 JSON and V2 (Open Inference Protocol) tensors: parsing requests, building responses.

No TensorFlow here: the transformer and the router use it too.

V1, client -> transformer:  {"instances": [{"user_id": "u-1", "candidates": ["3", "17"], "k": 3, "request_id": "r-1",
                            "consent": {"personalization": true, "analytics": false}}]}  (all but user_id optional)
V1, transformer -> predictor: the same instance plus "features": {"user": {name: value}, "items": {name: [value
                            per candidate]}, "items_mostly": {name: {"value": v, "except": [[index, value]]}}}
                            (items_mostly, optional: a per-candidate feature that is v for every candidate but
                            the listed ones; the transformer sends the user x item aggregates so)
V1 response, per instance:  {"request_id", "model_version", "variant",
                             "slate": [{"item_id", "position", "score", "propensity"}], "scores": {item_id: score}}

V2 inputs:   user_id BYTES [1]; candidates BYTES [n] (optional: the whole catalog); k INT32 [1] (optional);
             the request id is the OIP `id`; parameter `consent` (optional): a JSON string of the V1 object.
             Transformer -> predictor adds one tensor per feature: shape [1] per user, [n] per candidate.
V2 outputs:  item_id BYTES [k], position INT32 [k], propensity FP64 [k], score FP32 [k] (the slate, slot 1
             first); candidate_id BYTES [n] and candidate_score FP32 [n] (every candidate's score);
             parameters model_version, variant, request_id (+ experiment, arm in one); the response id: request id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kfloop.errors import MalformedRequest
from kfloop.events.schema import Consent, Identifier, PseudonymousId
from serving.common.consent import CONSENT, malformed_fields, v2_consent

VARIANT_HEADER = "x-kfloop-variant"
"""Set by the router (the local stand-in of Knative's split) to tell a predictor which variant it serves."""
USER_ID, CANDIDATES, K = "user_id", "candidates", "k"
RESERVED_INPUTS = frozenset({USER_ID, CANDIDATES, K})
OUTPUT_TENSORS = {
    "item_id": "BYTES",
    "position": "INT32",
    "propensity": "FP64",
    "score": "FP32",
    "candidate_id": "BYTES",
    "candidate_score": "FP32",
}


class RankInstance(BaseModel):
    """One ranking request, as a client sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: PseudonymousId
    candidates: list[Identifier] | None = Field(default=None, min_length=1)
    k: int | None = Field(default=None, ge=1, le=100)
    request_id: Identifier | None = None
    consent: Consent | None = None

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("candidates must not repeat an item")
        return value


@dataclass
class Ranking:
    """One ranking to compute: who, which candidates, how many slots, and (for the predictor) the features."""

    user_id: str
    request_id: str
    candidates: list[str] | None
    k: int | None
    user_features: dict[str, Any] = field(default_factory=dict)
    item_features: dict[str, Any] = field(default_factory=dict)
    item_features_mostly: dict[str, Any] = field(default_factory=dict)
    """Per-candidate features in the compact form: {name: {"value": v, "except": [[index, value], ...]}}."""
    consent: Consent | None = None
    """As the request gave it; None: the serving config's default applies."""

    @property
    def featured(self) -> bool:
        return bool(self.user_features or self.item_features or self.item_features_mostly)


def new_request_id() -> str:
    return uuid.uuid4().hex


def _instance(raw: Any, where: str) -> RankInstance:
    if not isinstance(raw, Mapping):
        raise MalformedRequest(f"{where} must be a JSON object, got {type(raw).__name__}")
    try:
        return RankInstance.model_validate(raw)
    except ValidationError as exc:
        raise malformed_fields(exc, where) from None


def v1_instances(payload: Any, *, max_instances: int) -> list[Any]:
    """The `instances` list of a V1 body, checked for shape."""
    if not isinstance(payload, Mapping):
        raise MalformedRequest("the body must be a JSON object with an `instances` list")
    instances = payload.get("instances")
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise MalformedRequest(f"unknown top-level field(s) {', '.join(unknown)}; send {{'instances': [...]}}")
    if not isinstance(instances, list) or not instances:
        raise MalformedRequest("`instances` must be a non-empty list of ranking requests")
    if len(instances) > max_instances:
        raise MalformedRequest(f"at most {max_instances} instances per request, got {len(instances)}")
    return instances


def parse_v1(payload: Any, *, max_instances: int, with_features: bool) -> list[Ranking]:
    """Rankings of a V1 body. `with_features`: the transformer's form (each instance carries `features`)."""
    rankings = []
    for index, raw in enumerate(v1_instances(payload, max_instances=max_instances)):
        where = f"instances[{index}]"
        features: Any = None
        if with_features and isinstance(raw, Mapping):
            raw = dict(raw)
            features = raw.pop("features", None)
        instance = _instance(raw, where)
        ranking = _ranking(instance)
        if with_features:
            block = _feature_block(features, f"{where}.features")
            ranking.user_features, ranking.item_features, ranking.item_features_mostly = block
            if ranking.candidates is None:
                raise MalformedRequest(f"{where}.candidates: required when features are given")
        rankings.append(ranking)
    return rankings


def _ranking(instance: RankInstance) -> Ranking:
    return Ranking(
        user_id=instance.user_id,
        request_id=instance.request_id or new_request_id(),
        candidates=list(instance.candidates) if instance.candidates is not None else None,
        k=instance.k,
        consent=instance.consent,
    )


def _feature_block(block: Any, where: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    if not isinstance(block, Mapping) or set(block) - {"user", "items", "items_mostly"}:
        raise MalformedRequest(f"{where} must be an object with `user`, `items` and optionally `items_mostly`")
    user, items = block.get("user") or {}, block.get("items") or {}
    mostly = block.get("items_mostly") or {}
    if not all(isinstance(part, Mapping) for part in (user, items, mostly)):
        raise MalformedRequest(f"{where}.user, {where}.items and {where}.items_mostly must be objects")
    for name, column in items.items():
        if not isinstance(column, list):
            raise MalformedRequest(f"{where}.items.{name} must be a list (one value per candidate)")
    twice = sorted(set(items) & set(mostly))
    if twice:
        raise MalformedRequest(f"{where}: feature(s) {', '.join(twice)} in both items and items_mostly")
    return dict(user), dict(items), dict(mostly)


# -- V2 ----------------------------------------------------------------------------------------------


def _tensor_values(infer_input: Any) -> list[Any]:
    """A V2 input's values as a flat Python list (strings decoded)."""
    try:
        values = infer_input.as_numpy().reshape(-1).tolist()
    except Exception as exc:  # kserve raises several types for a bad tensor
        raise MalformedRequest(f"input {infer_input.name}: {exc}") from None
    if infer_input.datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
    return values


def _parameter(parameters: Any, name: str) -> Any:
    if not parameters:
        return None
    value = parameters.get(name) if isinstance(parameters, Mapping) else None
    # gRPC-origin parameters are InferParameter messages; REST ones are plain values
    for attr in ("string_param", "int64_param", "bool_param"):
        if hasattr(value, attr):
            return getattr(value, value.WhichOneof("parameter_choice"))
    return value


_JSON_KINDS = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
_JSON_KINDS[list] = "an array"


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def parse_v2(request: Any, *, with_features: bool) -> Ranking:
    """The ranking of a V2 InferRequest (one user per request). Anything else here is a V1 body that is JSON but
    not an object (null, a list, a number): a 400."""
    inputs = getattr(request, "inputs", None)
    if not isinstance(inputs, list):
        raise MalformedRequest(
            f'the body must be a JSON object (V1: {{"instances": [...]}}), not {_json_kind(request)}'
        )
    tensors = {i.name: i for i in inputs}
    if USER_ID not in tensors:
        raise MalformedRequest("input `user_id` (BYTES, shape [1]) is required")
    user_ids = _tensor_values(tensors[USER_ID])
    if len(user_ids) != 1:
        raise MalformedRequest(f"input `user_id` must hold exactly one id, got {len(user_ids)}")
    raw: dict[str, Any] = {"user_id": user_ids[0]}
    if CANDIDATES in tensors:
        raw["candidates"] = _tensor_values(tensors[CANDIDATES])
    if K in tensors:
        ks = _tensor_values(tensors[K])
        if len(ks) != 1:
            raise MalformedRequest(f"input `k` must hold exactly one number, got {len(ks)}")
        raw["k"] = ks[0]
    request_id = request.id or _parameter(request.parameters, "request_id")
    if request_id:
        raw["request_id"] = str(request_id)
    ranking = _ranking(_instance(raw, "request"))
    ranking.consent = v2_consent(_parameter(request.parameters, CONSENT))
    if with_features:
        if ranking.candidates is None:
            raise MalformedRequest("input `candidates` is required when features are given")
        n = len(ranking.candidates)
        for name, tensor in tensors.items():
            if name in RESERVED_INPUTS:
                continue
            values = _tensor_values(tensor)
            if len(values) == 1 and n != 1:
                ranking.user_features[name] = values[0]
            elif len(values) == n:
                ranking.item_features[name] = values
            else:
                raise MalformedRequest(f"input `{name}` must have shape [1] or [{n}] (one per candidate)")
    return ranking


@dataclass(frozen=True)
class RankResult:
    """What the predictor decided for one ranking."""

    request_id: str
    model_version: str
    variant: str
    candidates: list[str]
    scores: np.ndarray
    slate: list[int]
    """Candidate indices, slot 1 first."""
    propensities: list[float]
    ranks: list[int] | None = None
    """Per shown slot: its item's rank among the candidates by score (1 = best), as the policy ordered them."""
    draws: list[str] | None = None
    """Per shown slot: greedy or exploration (serving.predictor.ranking.choose_slate)."""

    def slate_json(self) -> list[dict[str, Any]]:
        return [
            {
                "item_id": self.candidates[index],
                "position": position,
                "score": float(self.scores[index]),
                "propensity": propensity,
            }
            for position, (index, propensity) in enumerate(zip(self.slate, self.propensities, strict=True), start=1)
        ]

    def v1_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model_version": self.model_version,
            "variant": self.variant,
            "slate": self.slate_json(),
            "scores": dict(zip(self.candidates, self.scores.astype(float).tolist(), strict=True)),
        }

    def v2_outputs(self) -> list[dict[str, Any]]:
        k = len(self.slate)
        scores = self.scores.astype(float).tolist()
        data = {
            "item_id": [self.candidates[i] for i in self.slate],
            "position": list(range(1, k + 1)),
            "propensity": list(self.propensities),
            "score": [scores[i] for i in self.slate],
            "candidate_id": list(self.candidates),
            "candidate_score": scores,
        }
        return [
            {"name": name, "shape": [len(data[name])], "datatype": datatype, "data": data[name]}
            for name, datatype in OUTPUT_TENSORS.items()
        ]

    def v2_parameters(self) -> dict[str, str]:
        return {"model_version": self.model_version, "variant": self.variant, "request_id": self.request_id}


def input_metadata() -> list[dict[str, Any]]:
    """V2 model metadata of the client-facing inputs."""
    return [
        {"name": USER_ID, "datatype": "BYTES", "shape": [1]},
        {"name": CANDIDATES, "datatype": "BYTES", "shape": [-1]},
        {"name": K, "datatype": "INT32", "shape": [1]},
    ]


def output_metadata() -> list[dict[str, Any]]:
    return [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in OUTPUT_TENSORS.items()]

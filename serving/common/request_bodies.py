"""Ranking request bodies built from a Ranking (serving.common.protocol), as their senders send them: the V1
instance of a client and of the transformer (with features), the V2 (Open Inference Protocol) request with its
feature tensors; and the `items_mostly` encoding of a per-candidate feature (one value, a few exceptions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kfloop.errors import MalformedRequest
from serving.common.consent import CONSENT, v2_parameter
from serving.common.protocol import CANDIDATES, USER_ID, K, Ranking


def v2_feature_inputs(ranking: Ranking) -> list[dict[str, Any]]:
    """The feature tensors the transformer adds to a V2 request, as OIP JSON inputs."""
    out = []
    for name, value in ranking.user_features.items():
        out.append({"name": name, "shape": [1], "datatype": _datatype([value]), "data": [value]})
    columns = dict(ranking.item_features)
    n = len(ranking.candidates or ())
    columns.update({name: expand_mostly(name, m, n) for name, m in ranking.item_features_mostly.items()})
    for name, column in columns.items():
        column = list(column)
        out.append({"name": name, "shape": [len(column)], "datatype": _datatype(column), "data": column})
    return out


def expand_mostly(name: str, mostly: Any, n: int) -> list[Any]:
    """The per-candidate column of an `items_mostly` entry (values unchecked: the model's feed checks them)."""
    value, exceptions = mostly_parts(name, mostly, n)
    column = [value] * n
    for index, item_value in exceptions:
        column[index] = item_value
    return column


def mostly_parts(name: str, mostly: Any, n: int) -> tuple[Any, list[list[Any]]]:
    """(value, [[index, value], ...]) of an `items_mostly` entry; a 400 naming the feature if it is not
    {"value": v, "except": [[candidate index below n, value], ...]}."""
    if not isinstance(mostly, Mapping) or set(mostly) != {"value", "except"} or not isinstance(mostly["except"], list):
        raise MalformedRequest(f'feature {name}: items_mostly entries are {{"value": v, "except": [[index, value]]}}')
    for pair in mostly["except"]:
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int and 0 <= pair[0] < n):
            raise MalformedRequest(f"feature {name}: {pair!r} is not [candidate index below {n}, value]")
    return mostly["value"], mostly["except"]


def _datatype(values: list[Any]) -> str:
    first = values[0] if values else 0.0
    if isinstance(first, str):
        return "BYTES"
    if isinstance(first, bool | np.bool_):
        return "BOOL"
    if isinstance(first, int | np.integer):
        return "INT64"
    return "FP64"


def v2_request_json(ranking: Ranking, *, include_features: bool) -> dict[str, Any]:
    """A V2 request body for a ranking (the transformer's form when include_features)."""
    inputs: list[dict[str, Any]] = [{"name": USER_ID, "shape": [1], "datatype": "BYTES", "data": [ranking.user_id]}]
    if ranking.candidates is not None:
        inputs.append(
            {"name": CANDIDATES, "shape": [len(ranking.candidates)], "datatype": "BYTES", "data": ranking.candidates}
        )
    if ranking.k is not None:
        inputs.append({"name": K, "shape": [1], "datatype": "INT32", "data": [ranking.k]})
    if include_features:
        inputs.extend(v2_feature_inputs(ranking))
    body: dict[str, Any] = {"id": ranking.request_id, "inputs": inputs}
    if ranking.consent is not None:
        body["parameters"] = v2_parameter(ranking.consent)
    return body


def feature_json(ranking: Ranking) -> dict[str, Any]:
    """The V1 instance the transformer sends the predictor."""
    body: dict[str, Any] = {
        "user_id": ranking.user_id,
        "request_id": ranking.request_id,
        "candidates": ranking.candidates,
        "features": {"user": ranking.user_features, "items": ranking.item_features},
    }
    if ranking.item_features_mostly:
        body["features"]["items_mostly"] = ranking.item_features_mostly
    return _with_options(body, ranking)


def client_json(ranking: Ranking) -> dict[str, Any]:
    """The V1 instance a client sends (no features)."""
    body: dict[str, Any] = {"user_id": ranking.user_id, "request_id": ranking.request_id}
    if ranking.candidates is not None:
        body["candidates"] = ranking.candidates
    return _with_options(body, ranking)


def _with_options(body: dict[str, Any], ranking: Ranking) -> dict[str, Any]:
    """A V1 instance with the ranking's optional fields that are set (k, consent)."""
    if ranking.k is not None:
        body["k"] = ranking.k
    if ranking.consent is not None:
        body[CONSENT] = ranking.consent.model_dump()
    return body

"""The explainer service: a kserve.Model whose explain() answers V1 `:explain`.

Each instance is either a recorded decision's form (what the predictor records and the audit keeps):
    {"model_version": "v...", "inputs": {"candidates": [...], "k": 3, "user": {...}, "items": {...}},
     "slate": [{"item_id": "17", "rank": 1, "draw": "greedy"}, ...]}
(each slot as recorded: its rank by score and how the policy drew it; for a bare item id, as older records
give it, both are recomputed and the explanation says so), or the transformer's featured request ({"user_id",
"candidates", "k", "features": {"user", "items", "items_mostly"}}), which explains the top k by score with the
default version. The answer is {"explanations": [one per instance]}. Explanations run one at a time on a
worker thread, so health checks stay answered meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any

import kserve

from kfloop.errors import KfloopError, MalformedRequest
from serving.common.modelserver import KfloopModelServer
from serving.common.openapi import featured_bodies
from serving.explainer.config import ExplainerConfig
from serving.explainer.engine import ExplanationEngine
from serving.explainer.inputs import Slot, parse_slate

log = logging.getLogger(__name__)


def instance_arguments(instance: Any) -> tuple[str | None, dict[str, Any], list[Slot] | None]:
    """(model_version, inputs, slate) of one explain instance."""
    if not isinstance(instance, Mapping):
        raise MalformedRequest("each instance must be a JSON object")
    if not isinstance(instance.get("model_version"), str | None):
        raise MalformedRequest(f"model_version must be a version name, got {instance['model_version']!r}")
    if "inputs" in instance:
        slate = parse_slate(instance.get("slate"))
        inputs = instance["inputs"]
        if not isinstance(inputs, Mapping):
            raise MalformedRequest("inputs must be an object")
        return instance.get("model_version"), dict(inputs), slate
    features = instance.get("features")
    if not isinstance(features, Mapping) or "candidates" not in instance:
        raise MalformedRequest("an instance needs `inputs` (a recorded decision) or `candidates` and `features`")
    inputs = {
        "candidates": instance["candidates"],
        "k": instance.get("k"),
        "user": features.get("user") or {},
        "items": features.get("items") or {},
        "items_mostly": features.get("items_mostly") or {},
    }
    return instance.get("model_version"), inputs, None


class RankerExplainer(kserve.Model):
    def __init__(self, config: ExplainerConfig, engine: ExplanationEngine) -> None:
        super().__init__(config.model_name)
        self.config = config
        self.engine = engine
        self.ready = False
        self._one_at_a_time = threading.Lock()

    def start(self) -> None:
        """Readiness comes from warm_up()."""

    def warm_up(self) -> None:
        try:
            self.engine.models(None)
        except KfloopError as exc:
            log.warning("no default version loaded (%s); versions load when first asked for", exc.message)
        self.ready = True

    def openapi_bodies(self) -> dict[str, Any]:
        """The explain request in the document (serving.common.openapi): a recorded decision's inputs (and its
        slate), or the transformer's featured request. The explainer does not rank: :predict and V2 infer,
        which KServe serves for every model, answer 400 naming :explain whatever their body."""
        featured = featured_bodies()
        instance = featured["v1"]["properties"]["instances"]["items"]
        version = {"type": "string", "description": "the model version to explain (default: the one served)"}
        recorded = {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "model_version": version,
                "inputs": {"type": "object", "description": "the decision's inputs, as the audit trail holds them"},
                "slate": {"type": "array", "items": {"type": "object"}, "description": "the slate it showed"},
            },
        }
        either = {"oneOf": [recorded, {**instance, "properties": {**instance["properties"], "model_version": version}}]}
        instances = {"type": "array", "minItems": 1, "maxItems": self.config.max_instances, "items": either}
        v1 = {"type": "object", "required": ["instances"], "properties": {"instances": instances}}
        return {"v1": v1, "v2": featured["v2"]}

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        raise MalformedRequest("this is the explainer: POST /v1/models/NAME:explain")

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        if not isinstance(payload, Mapping) or not isinstance(payload.get("instances"), list):
            raise MalformedRequest("the body must be {'instances': [...]}")
        instances = payload["instances"]
        if not instances or len(instances) > self.config.max_instances:
            raise MalformedRequest(f"send 1 to {self.config.max_instances} instances")
        arguments = [instance_arguments(i) for i in instances]
        explanations = [await asyncio.to_thread(self._explain, *a) for a in arguments]
        return {"explanations": explanations}

    def _explain(self, version: str | None, inputs: dict[str, Any], slate: list[Slot] | None) -> dict[str, Any]:
        with self._one_at_a_time:
            return self.engine.explain(version, inputs, slate)


def serve(config: ExplainerConfig) -> None:
    from kserve.model_repository import ModelRepository

    # Alibi warns on every anchor below the precision threshold; the explanation reports the precision reached
    # and its sentence then gives no rule as the reason
    logging.getLogger("alibi.explainers.anchors.anchor_base").setLevel(logging.ERROR)
    model = RankerExplainer(config, ExplanationEngine(config))
    repository = ModelRepository()
    repository.update(model)
    threading.Thread(target=model.warm_up, name="explainer-warm-up", daemon=True).start()
    KfloopModelServer(config.http_port, repository).start([])

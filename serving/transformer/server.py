"""The transformer: a version-agnostic kserve.Model in front of the predictor.

preprocess: parse the V1 or V2 request (400 with the reason), read the user's and the candidates' features
through the fast online reader (cold start: defaults; without consent to personalization, none of the user's
are read), default candidates = the whole catalog.
predict:    forward to the predictor in the protocol the client used (locally the router, which splits between
            the stable and the canary predictor as Knative does on a cluster) and pass its answer through.
explain:    forward the featured request to the explainer service.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import kserve
import orjson
from prometheus_client import Histogram

from kfloop.errors import KfloopError, MalformedRequest, NotFound, NotReady
from serving.common.consent import consent_or_default
from serving.common.heap import freeze_loaded_heap
from serving.common.modelserver import KfloopModelServer
from serving.common.oip import answer_as_asked, requested_outputs
from serving.common.protocol import OUTPUT_TENSORS, Ranking, input_metadata, output_metadata, parse_v1, parse_v2
from serving.common.request_bodies import feature_json, v2_request_json
from serving.common.upstream import Answer, HttpPool, UpstreamUnavailable
from serving.transformer.config import TransformerConfig

log = logging.getLogger(__name__)

_FORWARDED_HEADERS = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "traceparent", "tracestate")
UPSTREAM_SECONDS = Histogram(
    "kfloop_transformer_upstream_seconds",
    "Time of the call to the predictor or explainer, by target and outcome.",
    ["target", "outcome"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


@dataclass(frozen=True)
class Forward:
    """A featured request, ready to go to the predictor or the explainer."""

    v2: bool
    body: dict[str, Any]
    request: Any = None
    """The client's V2 InferRequest: its requested outputs and binary data parameters shape the answer."""


class UpstreamError(KfloopError):
    """The predictor or explainer failed or could not be reached."""

    http_status = 502


class RankerTransformer(kserve.Model):
    def __init__(self, config: TransformerConfig, features: Any, predictor_url: str) -> None:
        super().__init__(config.model_name)
        self.config = config
        self.features = features
        self.predictor_url = predictor_url.rstrip("/")
        self.explainer_url = config.explainer_url.rstrip("/") if config.explainer_url else None
        self._pools: dict[str, HttpPool] = {}
        self.ready = True

    def start(self) -> None:
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self.features.close()

    def get_input_types(self) -> list[dict[str, Any]]:
        return input_metadata()

    def get_output_types(self) -> list[dict[str, Any]]:
        return output_metadata()

    def pool(self, base_url: str) -> HttpPool:
        pool = self._pools.get(base_url)
        if pool is None:
            pool = self._pools[base_url] = HttpPool(base_url, timeout_s=self.config.request_timeout_s)
        return pool

    # -- preprocess ----------------------------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Forward:
        if isinstance(payload, dict):
            rankings = parse_v1(payload, max_instances=self.config.max_instances, with_features=False)
            return Forward(False, {"instances": [feature_json(self._featurize(r)) for r in rankings]})
        ranking = parse_v2(payload, with_features=False)
        requested_outputs(payload, OUTPUT_TENSORS)  # a bad name is refused before the predictor is called
        ranking = self._featurize(ranking)
        return Forward(True, v2_request_json(ranking, include_features=True), payload)

    def _featurize(self, ranking: Ranking) -> Ranking:
        if ranking.candidates is not None and len(ranking.candidates) > self.config.max_candidates:
            raise MalformedRequest(f"at most {self.config.max_candidates} candidates, got {len(ranking.candidates)}")
        # the consent goes on to the predictor as decided here, so both act on the same one
        ranking.consent = consent_or_default(ranking.consent, self.config.consent_default)
        ranking = self.features.featurize(ranking, personal=ranking.consent.personalization)
        if not ranking.candidates:
            raise NotReady("no candidates: the request names none and the catalog is empty (materialize features)")
        return ranking

    # -- predict / explain ---------------------------------------------------------------------------------
    async def predict(
        self, payload: Forward, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> Any:
        if not payload.v2:
            return await self._call(
                "predictor", self.predictor_url, f"/v1/models/{self.name}:predict", payload.body, headers
            )
        answer = await self._call(
            "predictor", self.predictor_url, f"/v2/models/{self.name}/infer", payload.body, headers
        )
        return _as_asked(answer, payload.request)

    async def explain(self, payload: Forward, headers: dict[str, str] | None = None) -> Any:
        if self.explainer_url is None:
            raise NotFound("no explainer is configured for this transformer: explanations are not offered here")
        if payload.v2:
            raise MalformedRequest(":explain takes V1 JSON (KServe's explain protocol)")
        path = f"/v1/models/{self.name}:explain"
        return await self._call(
            "explainer", self.explainer_url, path, payload.body, headers, timeout=self.config.explain_timeout_s
        )

    async def _call(
        self,
        target: str,
        base_url: str,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None,
        timeout: float | None = None,
    ) -> Any:
        forward = {"content-type": "application/json"}
        forward.update({h: v for h, v in (headers or {}).items() if h in _FORWARDED_HEADERS})
        started = time.perf_counter()
        outcome = "unreachable"
        try:
            answer = await self.pool(base_url).request("POST", path, orjson.dumps(body), forward, timeout_s=timeout)
            outcome = str(answer.status)
        except UpstreamUnavailable as exc:
            raise NotReady(f"{target} unreachable: {exc}") from None
        finally:
            UPSTREAM_SECONDS.labels(target, outcome).observe(time.perf_counter() - started)
        if answer.status == 200:
            return orjson.loads(answer.body)
        raise _upstream_error(target, answer)


def _as_asked(answer: Any, request: Any) -> Any:
    """The predictor's V2 answer (JSON, every output) as the client asked for it (its requested outputs, JSON or
    binary; over gRPC, a gRPC response)."""
    from kserve import InferResponse

    try:
        response = InferResponse.from_rest(answer)
    except (KeyError, TypeError) as exc:
        raise UpstreamError(f"predictor answered a V2 body without {exc}") from None
    return answer_as_asked(
        request,
        response.outputs,
        response_id=response.id,
        model_name=response.model_name,
        model_version=response.model_version,
        parameters=response.parameters,
    )


def _upstream_error(target: str, answer: Answer) -> KfloopError:
    """The upstream's error, in the one error shape (its message and details, when it answered in that shape)."""
    try:
        payload = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        payload = None
    payload = payload if isinstance(payload, dict) else {}
    reason = payload.get("message") or payload.get("error") or answer.body.decode("utf-8", "replace")[:500]
    if answer.status in (400, 413, 422):
        details = payload.get("details")
        return MalformedRequest(reason, details=details if isinstance(details, list) else None)
    if answer.status == 503:
        return NotReady(f"{target}: {reason}")
    return UpstreamError(f"{target} answered {answer.status}: {reason}")


def serve(config: TransformerConfig, predictor_url: str) -> None:
    from serving.transformer.features import OnlineFeatures

    features = OnlineFeatures(config.features)
    features.start_reloading(config.item_reload_interval_s)
    log.info("transformer: %d catalog items; predictor %s", len(features.catalog), predictor_url)
    model = RankerTransformer(config, features, predictor_url)
    freeze_loaded_heap()
    KfloopModelServer(config.http_port, grpc_port=config.grpc_port).start([model])

"""The predictor: a kserve.Model that scores the candidates, fills K slots by the exploration policy, records
the decision durably, and answers V1 JSON and V2 (Open Inference Protocol) through kserve.ModelServer.

The server answers as soon as it starts; the model loads in the background (TensorFlow takes 20-30 s), and
until it is ready, requests get 503 (NotReady). Request problems are 400 with the reason; the KfloopErrors
raised here are answered by the handlers the model server registers (serving/common/errors.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any

import kserve
import numpy as np
from prometheus_client import Counter

from kfloop.audit.record import SHADOW
from kfloop.events.schema import Consent
from kfloop.experiments.arms import ARM_OF_VARIANT, EXPERIMENT_HEADER
from serving.common.consent import consent_or_default
from serving.common.heap import freeze_loaded_heap
from serving.common.modelserver import KfloopModelServer
from serving.common.oip import answer_as_asked, requested_outputs
from serving.common.protocol import (
    OUTPUT_TENSORS,
    VARIANT_HEADER,
    Ranking,
    RankResult,
    input_metadata,
    output_metadata,
    parse_v1,
    parse_v2,
)
from serving.common.versions import ResolvedVersion
from serving.predictor.config import PredictorConfig
from serving.predictor.decisions import DecisionLog, build_decision
from serving.predictor.impressions import SLATES_WITHOUT_CONSENT
from serving.predictor.metrics import PredictorMetrics
from serving.predictor.ranking import choose_slate, make_policy

log = logging.getLogger(__name__)

_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}")

DECISIONS = Counter("kfloop_predictor_decisions_total", "Slates served (and recorded).", ["variant", "model_version"])


class RankerPredictor(kserve.Model):
    """One model version behind the V1/V2 endpoints."""

    def __init__(self, config: PredictorConfig, resolved: ResolvedVersion) -> None:
        super().__init__(config.model_name)
        self.config = config
        self.resolved = resolved
        self.version = resolved.version
        self.ready = False
        self.ranker: Any = None
        self.policy = make_policy(config.policy)
        self.rng = np.random.default_rng(config.policy.seed)
        self.decisions: DecisionLog | None = None
        self.metrics = PredictorMetrics(resolved, config.variant, config.drift)
        if config.audit.enabled:
            # one spool per version: a restarted process resumes shipping what its predecessor spooled
            spool_dir = config.audit.spool.dir / resolved.version
            self.decisions = DecisionLog(config.audit, config.model_name, spool_dir, config.impressions)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """KServe calls this when registering; readiness comes from load() only."""

    def load(self) -> bool:
        from serving.common.model_io import SavedRanker

        ranker = SavedRanker(self.resolved.model_path)
        ranker.warm_up()
        if self.decisions is not None:
            self.decisions.open()
        self.ranker = ranker
        self.metrics.start(ranker.columns)
        frozen = freeze_loaded_heap()  # TensorFlow's objects stay out of every later collection
        log.debug("%d objects frozen after loading", frozen)
        self.ready = True
        log.info("model version %s ready (variant %s)", self.version, self.config.variant)
        return True

    def stop(self) -> None:
        # the log stays (closed): a request already past the readiness check is refused by it, not answered
        # unrecorded (KServe calls stop() from a signal handler, which can run in the middle of a request)
        self.ready = False
        self.metrics.stop()
        if self.decisions is not None:
            self.decisions.close()

    # -- metadata ----------------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return input_metadata()

    def get_output_types(self) -> list[dict[str, Any]]:
        return output_metadata()

    def openapi_bodies(self) -> dict[str, Any]:
        """The requests this model takes, for the model server's OpenAPI document: the transformer's form."""
        from serving.common.openapi import featured_bodies

        return featured_bodies()

    # -- serving -----------------------------------------------------------------------------------------
    def observe_answer(self, variant: str | None, status: int, seconds: float) -> None:
        """Every ranking request answered, told by the model server (serving.common.ranking_metrics)."""
        self.metrics.observe_answer(variant, status, seconds)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None, response_headers: Any = None) -> Any:
        variant = self._header(headers, VARIANT_HEADER) or self.config.variant
        experiment = self._header(headers, EXPERIMENT_HEADER)
        arm = ARM_OF_VARIANT.get(variant) if experiment else None
        if isinstance(payload, dict):
            rankings = parse_v1(payload, max_instances=self.config.max_instances, with_features=True)
            results = await self._rank_all(rankings, variant, experiment, arm)
            inside = {"experiment": {"id": experiment, "arm": arm}} if experiment else {}
            return {"predictions": [r.v1_json() | inside for r in results]}
        ranking = parse_v2(payload, with_features=True)
        requested_outputs(payload, OUTPUT_TENSORS)  # a bad name is refused before a decision is recorded
        (result,) = await self._rank_all([ranking], variant, experiment, arm)
        inside = {"experiment": experiment, "arm": arm or ""} if experiment else {}
        return _v2_response(self.name, result, payload, inside)

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        from kfloop.errors import NotFound

        raise NotFound("the predictor explains nothing: ask the transformer's :explain, which asks the explainer")

    @staticmethod
    def _header(headers: dict[str, str] | None, name: str) -> str | None:
        """A variant or experiment name from the router's header (None when absent); a malformed one is a 400."""
        from kfloop.errors import MalformedRequest

        value = (headers or {}).get(name)
        if value is not None and not _VARIANT.fullmatch(value):
            raise MalformedRequest(f"header {name} {value!r} is not a valid name")
        return value

    async def _rank_all(
        self, rankings: list[Ranking], variant: str, experiment: str | None = None, arm: str | None = None
    ) -> list[RankResult]:
        from kfloop.errors import NotReady

        if not self.ready or self.ranker is None:
            raise NotReady(f"model version {self.version} is still loading")
        scored = [self._rank(r, variant, experiment, arm) for r in rankings]
        if self.decisions is not None:
            futures = [self.decisions.submit(decision) for _, decision, _ in scored]
            await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
            for _, decision, _ in scored:
                self.decisions.after_answer(decision)
        DECISIONS.labels(variant, self.version).inc(len(scored))
        unconsented = sum(not consent.personalization for _, _, consent in scored)
        if unconsented:
            SLATES_WITHOUT_CONSENT.labels(variant, self.version).inc(unconsented)
        return [result for result, _, _ in scored]

    def _rank(
        self, ranking: Ranking, variant: str, experiment: str | None, arm: str | None
    ) -> tuple[RankResult, Any, Consent]:
        from kfloop.errors import MalformedRequest

        candidates = ranking.candidates or []
        if len(candidates) > self.config.max_candidates:
            raise MalformedRequest(f"at most {self.config.max_candidates} candidates, got {len(candidates)}")
        feed = self.ranker.feed(candidates, ranking.user_features, ranking.item_features, ranking.item_features_mostly)
        scores, logits = self.ranker.score(feed)
        k = ranking.k or self.config.policy.slate_size
        choice = choose_slate(self.policy, logits.astype(np.float64), k, self.rng)
        self.metrics.observe_slate(variant, feed.tensors, choice.indices, scores)
        result = RankResult(
            request_id=ranking.request_id,
            model_version=self.version,
            variant=variant,
            candidates=candidates,
            scores=scores,
            slate=choice.indices,
            propensities=choice.propensities,
            ranks=choice.ranks,
            draws=choice.draws,
        )
        consent = consent_or_default(ranking.consent, self.config.consent_default)
        decision = None
        if self.decisions is not None:
            # a shadow's whole distribution: production's served slots of this request are weighed by it
            table = _slot_probabilities(candidates, choice.table) if variant == SHADOW else None
            decision = build_decision(
                result, ranking.user_id, k, self.config.policy, feed, consent, (experiment, arm), table
            )
        return result, decision, consent


def _slot_probabilities(candidates: list[str], table: np.ndarray) -> dict[str, list[float]]:
    return {item: [float(p) for p in row] for item, row in zip(candidates, table, strict=True)}


def _v2_response(model_name: str, result: RankResult, request: Any, experiment: dict[str, str]) -> Any:
    """The slate as V2 outputs: those the request asked for, each as JSON or binary as it asked."""
    from kserve import InferOutput

    outputs = [InferOutput(o["name"], o["shape"], o["datatype"], data=o["data"]) for o in result.v2_outputs()]
    return answer_as_asked(
        request,
        outputs,
        response_id=result.request_id,
        model_name=model_name,
        model_version=result.model_version,
        parameters={**result.v2_parameters(), **experiment},
    )


def serve(config: PredictorConfig, resolved: ResolvedVersion) -> None:
    """Run kserve.ModelServer with the model registered while it loads in the background."""
    import os

    from kserve.model_repository import ModelRepository

    model = RankerPredictor(config, resolved)
    repository = ModelRepository()
    repository.update(model)

    def load() -> None:
        try:
            model.load()
        except Exception:
            log.exception("loading model version %s failed; exiting", resolved.version)
            logging.shutdown()
            os._exit(3)

    threading.Thread(target=load, name="model-load", daemon=True).start()
    KfloopModelServer(config.http_port, repository, grpc_port=config.grpc_port).start([])

"""Ranking requests answered, by the role, model version and variant that answered them and the HTTP status, as
docs/metrics.md names them: `kfloop_ranking_requests_total` and `kfloop_ranking_request_seconds`.

On a model server, `RankingAnswers` (an ASGI middleware, outside the V1 fast path and every error handler)
sees each ranking request's final status and time, whatever answered it: the model, KServe's decoding, a
not-ready model, an error handler, or an unexpected exception (a 500). It tells the model named in the path,
if that model observes its answers (`AnswerObserver`: the predictor does, the transformer does not).
"""

from __future__ import annotations

import re
import time
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.common.metrics import LATENCY_BUCKETS
from serving.common.protocol import VARIANT_HEADER

VARIANTS = frozenset({"stable", "canary", "shadow"})
OTHER_VARIANT = "other"
_VARIANT_HEADER = VARIANT_HEADER.lower().encode("latin-1")
_RANKING_PATH = re.compile(r"^/v1/models/([^/]+):predict$|^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")


def ranking_requests_counter(registry: CollectorRegistry = REGISTRY) -> Counter:
    return Counter(
        "kfloop_ranking_requests",
        "Ranking requests answered, by the role, model version and variant that answered and the HTTP status.",
        ["role", "model_version", "variant", "code"],
        registry=registry,
    )


def ranking_seconds_histogram(registry: CollectorRegistry = REGISTRY) -> Histogram:
    return Histogram(
        "kfloop_ranking_request_seconds",
        "Time from a ranking request's arrival to the end of its answer.",
        ["role", "model_version", "variant"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


def metric_variant(variant: str | None, default: str) -> str:
    """The variant as a label value: a request's own (or the default), bounded to the known variants so that a
    client's header cannot make series without end."""
    chosen = variant or default
    return chosen if chosen in VARIANTS or chosen == default else OTHER_VARIANT


class AnswerObserver(Protocol):
    def observe_answer(self, variant: str | None, status: int, seconds: float) -> None:
        """One ranking request answered: the variant header it came with (None: none), its status, its time."""


def answer_observer(model: Any) -> AnswerObserver | None:
    """The model itself if it observes its answers (has `observe_answer`), else None."""
    return model if callable(getattr(model, "observe_answer", None)) else None


class RankingAnswers:
    """ASGI: the status and time of every ranking request (V1 predict, V2 infer), told to the model it named."""

    def __init__(self, app: ASGIApp, *, dataplane: Any) -> None:
        self.app = app
        self.models = dataplane.model_registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _RANKING_PATH.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        observer = answer_observer(self.models.get_model(match.group(1) or match.group(2))) if match else None
        if observer is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler becomes a 500 further out

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            variant = next((v.decode("latin-1") for k, v in scope["headers"] if k == _VARIANT_HEADER), None)
            observer.observe_answer(variant, status, time.perf_counter() - started)

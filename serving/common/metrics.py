"""Prometheus plumbing for the services: request latency by route, and the /metrics response."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def request_latency_histogram(prefix: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(
        f"{prefix}_request_seconds",
        "Time from a request's arrival to the end of its response, by route template and status.",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


class RequestLatencyMiddleware:
    """Observe every HTTP request in a histogram labelled by route template (bounded label values)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
            self.histogram.labels(method, route, str(status)).observe(time.perf_counter() - started)


def metrics_response(*registries: CollectorRegistry) -> Response:
    """Prometheus text of the given registries plus the process-wide default one (library metrics)."""
    body = b"".join(generate_latest(r) for r in (*registries, REGISTRY))
    return Response(body, media_type=CONTENT_TYPE_LATEST)

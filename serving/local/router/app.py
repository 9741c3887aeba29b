"""The router: a small FastAPI app that stands where Knative's traffic split stands on a cluster, between the
transformer and the predictors. Each request is sent to the canary with the canary's percentage (a fresh draw
per request, as KServe's Serverless mode does), else to stable; the predictor is told its variant in a header.
If the canary errors (5xx) or is down, the request is retried on stable and the fallback counted.

During an experiment (the canary route names one) each user stays in one arm (a hash of user and experiment id,
kfloop.experiments.arms) and every predictor is told the experiment's id; a canary in `shadow` mode is sent a
copy of every request (variant `shadow`), and its answer is dropped: it never reaches a user.

A version may run as several predictor processes (replicas, as a revision has pods): each request goes to the
replica with the fewest requests in flight (Knative's activator balances so too), and a replica that refuses
the connection (nothing was sent) is passed over for the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kfloop.config import load_section
from kfloop.errors import KfloopError, NotReady
from kfloop.experiments.arms import EXPERIMENT_HEADER
from serving.common.flags import parser_for
from serving.common.http import install_error_handlers
from serving.common.metrics import LATENCY_BUCKETS, metrics_response
from serving.common.protocol import VARIANT_HEADER
from serving.common.ranking_metrics import ranking_requests_counter
from serving.common.service import serve_app
from serving.common.upstream import Answer, HttpPool, UpstreamRefused, UpstreamUnavailable
from serving.local.router import flags
from serving.local.router.config import RouterConfig
from serving.local.router.openapi import document_router
from serving.local.router.requests import content_length, json_object, json_part, read_body, request_user
from serving.local.router.routes import Route, Routes, read_routes

log = logging.getLogger(__name__)

ROLE = "router"
_GATEWAY_STATUS = {"timeout": "504", "unreachable": "502"}
"""A predictor that gave no answer counts as the status a gateway answers for it."""
BINARY_HEADER = "inference-header-content-length"
"""The Open Inference Protocol's binary tensor extension: forwarded both ways, the body passed as it is."""
_FORWARDED_HEADERS = (
    BINARY_HEADER,
    "content-type",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "traceparent",
    "tracestate",
)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kfloop_router_requests_total",
            "Predictor requests by the variant that answered and its status.",
            ["variant", "status"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "kfloop_router_canary_fallbacks_total",
            "Requests drawn for the canary that were retried on stable, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rankings = ranking_requests_counter(self.registry)
        """kfloop_ranking_requests_total{role="router"}: each attempt at a predictor, by the version and variant it
        was routed to and the status it ended with (502 refused or unreachable, 504 no answer in time)."""
        self.latency = Histogram(
            "kfloop_router_upstream_seconds",
            "Time of the call to a predictor, by variant.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


class RoutingTable:
    """The current routes, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.routes = Routes()
        self._mtime: float | None = None

    def refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        try:
            self.routes = read_routes(self.path)
            self._mtime = mtime
            log.info("routes: %s", self.routes.model_dump())
        except Exception:
            log.exception("routes file %s is unreadable; keeping the previous routes", self.path)


class Router:
    """The split and the fallback, on a raw ASGI path (FastAPI's routing costs more than the split itself)."""

    def __init__(self, config: RouterConfig, metrics: RouterMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.table = RoutingTable(config.routes_file)
        self.rng = np.random.default_rng(config.seed)
        self._pools: dict[str, HttpPool] = {}
        self._in_flight: dict[str, int] = {}
        self._turn = 0
        self._mirrored: set[asyncio.Task[Any]] = set()
        """Shadow copies in flight (held, so none is collected before it ends)."""

    def pool(self, url: str) -> HttpPool:
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = HttpPool(url, timeout_s=self.config.request_timeout_s)
        return pool

    async def answer(self, scope: Scope, receive: Receive) -> Answer:
        """A ranking POST's answer: pick the variant, forward, fall back to stable if the canary fails."""
        try:
            headers = _forwarded(scope)
            body = await read_body(receive, content_length(scope), self.config.max_body_bytes)
            user_id = request_user(json_object(json_part(body, headers.get(BINARY_HEADER))))
            return await self.forward(_raw_path(scope), body, headers, user_id)
        except KfloopError as exc:
            return Answer(exc.http_status, orjson.dumps(exc.to_dict()), "application/json")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.answer(scope, receive)
        await send({"type": "http.response.start", "status": answer.status, "headers": _headers(answer)})
        await send({"type": "http.response.body", "body": answer.body})

    async def forward(self, path: str, body: bytes, headers: dict[str, str], user_id: str | None = None) -> Answer:
        routes = self.table.routes
        if routes.stable is None:
            raise NotReady("no stable predictor is routed yet")
        if routes.canary is not None and routes.canary.experiment is not None:
            headers = {**headers, EXPERIMENT_HEADER: routes.canary.experiment}
        if routes.shadow is not None:
            self._mirror(routes, path, body, headers)
        variant = routes.pick(float(self.rng.random()), user_id)
        if variant == "canary":
            answer, reason = await self._try(routes, "canary", path, body, headers)
            if answer is not None:
                return answer
            self.metrics.fallbacks.labels(reason).inc()
            log.warning("canary failed (%s); retrying on stable", reason)
        answer, reason = await self._try(routes, "stable", path, body, headers)
        if answer is None:
            raise NotReady(f"the stable predictor failed: {reason}")
        return answer

    def _mirror(self, routes: Routes, path: str, body: bytes, headers: dict[str, str]) -> None:
        """A copy to the shadow, not waited for; its answer (or failure) is counted and dropped."""
        task = asyncio.get_running_loop().create_task(self._try(routes, "shadow", path, body, headers))
        self._mirrored.add(task)
        task.add_done_callback(self._mirrored.discard)

    async def _try(
        self, routes: Routes, variant: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[Answer | None, str]:
        route = routes.route(variant)
        assert route is not None
        started = time.perf_counter()
        try:
            answer = await self._send(route, "POST", path, body, {**headers, VARIANT_HEADER: variant})
        except UpstreamUnavailable as exc:
            reason = "timeout" if "no answer within" in str(exc) else "unreachable"
            self.metrics.requests.labels(variant, "unreachable").inc()
            self.metrics.rankings.labels(ROLE, route.version, variant, _GATEWAY_STATUS[reason]).inc()
            return None, reason
        finally:
            self.metrics.latency.labels(variant).observe(time.perf_counter() - started)
        self.metrics.requests.labels(variant, str(answer.status)).inc()
        self.metrics.rankings.labels(ROLE, route.version, variant, str(answer.status)).inc()
        if answer.status >= 500:
            return None, f"status_{answer.status}"
        return answer, ""

    async def _send(
        self, route: Route, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        """To the least busy replica; one that refuses the connection is passed over for the next."""
        for url in self._by_load(route.urls):
            self._in_flight[url] = self._in_flight.get(url, 0) + 1
            try:
                return await self.pool(url).request(method, path, body, headers)
            except UpstreamRefused as exc:
                refused = exc
            finally:
                self._in_flight[url] -= 1
        raise refused

    def _by_load(self, urls: tuple[str, ...]) -> list[str]:
        """Fewest requests in flight first; ties taken in turn, so an idle stack still uses every replica."""
        if len(urls) == 1:
            return list(urls)
        self._turn += 1
        rotated = [urls[(self._turn + i) % len(urls)] for i in range(len(urls))]
        return sorted(rotated, key=lambda url: self._in_flight.get(url, 0))

    async def get(self, path: str) -> Response:
        """Metadata and readiness: asked of the stable predictor."""
        stable = self.table.routes.stable
        if stable is None:
            raise NotReady("no stable predictor is routed yet")
        try:
            answer = await self._send(stable, "GET", path)
        except UpstreamUnavailable as exc:
            raise NotReady(f"the stable predictor is unreachable: {exc}") from None
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()


class FastPath:
    """ASGI: ranking POSTs go straight to the router; everything else to the FastAPI app."""

    def __init__(self, app: FastAPI, router: Router) -> None:
        self.app, self.router = app, router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _RANKING_PATH.match(scope["path"]):
            await self.router.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _V1ModelName(StringConvertor):
    """A V1 model's name: not one ending in :predict, whose path is the predict resource's (POST only: 405 with
    `Allow: POST`, not a metadata lookup of a model named `x:predict`)."""

    regex = "[^/]+(?<!:predict)"


register_url_convertor("v1_model", _V1ModelName())
_RANKING_PATH = re.compile(r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+/infer$")


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded): the decoded one may hold spaces, no request line's."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else quote(scope["path"])


def _forwarded(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name.decode("latin-1") in _FORWARDED_HEADERS
    }


def _headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", answer.content_type.encode("latin-1")), (b"content-length", b"%d" % len(answer.body))]
    if answer.inference_header_length is not None:
        headers.append((BINARY_HEADER.encode(), answer.inference_header_length.encode("latin-1")))
    return headers


def _response(answer: Answer) -> Response:
    """A ranking answer as FastAPI's (when the app is reached without FastPath)."""
    response = Response(answer.body, status_code=answer.status, media_type=answer.content_type)
    if answer.inference_header_length is not None:
        response.headers[BINARY_HEADER] = answer.inference_header_length
    return response


def create_app(config: RouterConfig) -> FastPath:
    metrics = RouterMetrics()
    router = Router(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        router.table.refresh()
        task = asyncio.create_task(_refresh_loop(router.table, config.reload_interval_s))
        try:
            yield
        finally:
            task.cancel()
            await router.close()

    app = FastAPI(title="kfloop router", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    document_router(app)

    _model_server_routes(app, router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        if router.table.routes.stable is None:
            raise NotReady("no stable predictor is routed yet")
        return {"status": "ready"}

    @app.get("/v1/routes")
    async def routes() -> Routes:
        return router.table.routes

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics.registry)

    return FastPath(app, router)


def _model_server_routes(app: FastAPI, router: Router) -> None:
    """The model server's routes, passed on: ranking to stable or canary, metadata and readiness from stable."""

    @app.post("/v1/models/{model_name}:predict", response_class=Response)
    async def v1_predict(model_name: str, request: Request) -> Response:
        """FastPath answers it first; here for the document, and for the app reached without FastPath."""
        return _response(await router.answer(request.scope, request.receive))

    @app.post("/v2/models/{model_name}/infer", response_class=Response)
    async def v2_infer(model_name: str, request: Request) -> Response:
        return _response(await router.answer(request.scope, request.receive))

    @app.get("/v1/models/{model_name:v1_model}")
    async def v1_model(model_name: str) -> Response:
        return await router.get(f"/v1/models/{quote(model_name, safe='')}")

    @app.get("/v2/models/{model_name}")
    async def v2_model(model_name: str) -> Response:
        return await router.get(f"/v2/models/{quote(model_name, safe='')}")

    @app.get("/v2/models/{model_name}/ready")
    async def v2_model_ready(model_name: str) -> Response:
        return await router.get(f"/v2/models/{quote(model_name, safe='')}/ready")

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        return await router.get("/v2/health/ready")


async def _refresh_loop(table: RoutingTable, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        table.refresh()


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop router` (and `python -m serving.local.router`): the same flags, parsed."""
    overrides = {"routes_file": args.routes_file, "seed": args.seed, "host": args.host, "port": args.port}
    config = load_section(RouterConfig, args.config, "router", overrides)
    serve_app(create_app(config), config.host, config.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.local.router`."""
    return run_from_args(parser_for("serving.local.router", flags.HELP, flags.add_arguments).parse_args(argv))

"""The feedback collector: FastAPI app factory and its entry point.

Events are validated one by one and acknowledged only once the event log has fsynced them; the log is
opened (and recovered) in the background so /healthz answers while /readyz waits for recovery.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from kfloop.config import load_config
from kfloop.errors import InvalidInput
from kfloop.eventlog import EventLog
from kfloop.events import event_json_schema
from serving.collector import flags, openapi
from serving.collector.config import CollectorConfig
from serving.collector.ingest import DurableSink, EventValidator, Outcome, summarize
from serving.collector.metrics import CollectorMetrics
from serving.collector.native import events_in
from serving.collector.origin import ServingOrigin
from serving.collector.segment_ingest import SegmentIngest
from serving.common.body import parse_json, read_body
from serving.common.flags import parser_for
from serving.common.http import install_error_handlers
from serving.common.lifecycle import ResourceLifecycle
from serving.common.metrics import RequestLatencyMiddleware, metrics_response
from serving.common.service import serve_app, service_version

log = logging.getLogger(__name__)

NATIVE_SOURCE = "api"
# Segment's endpoints, including analytics.js's one-letter forms; None is a batch.
SEGMENT_ENDPOINTS: dict[str, str | None] = {
    "track": "track",
    "identify": "identify",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "batch": None,
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
    "b": None,
}


def create_app(config: CollectorConfig) -> FastAPI:
    """A collector app for this config; nothing is opened until the app's lifespan starts."""
    metrics = CollectorMetrics()
    event_log = EventLog(config.event_log, writer_id=config.writer_id)
    lifecycle = ResourceLifecycle(event_log, name="event log", closed_message="event log closed and sealed")
    sink = DurableSink(event_log, metrics)
    validator = EventValidator(config.max_future_skew_s)
    app = FastAPI(
        title="kfloop feedback collector",
        version=service_version(),
        description="Receives feedback events (native or via Segment's HTTP Tracking API) into the event log.",
        lifespan=lifecycle.lifespan,
    )
    install_error_handlers(app)
    if config.cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors.allow_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
            max_age=600,
        )
    app.add_middleware(RequestLatencyMiddleware, histogram=metrics.request_latency)
    app.include_router(_ops_routes(lifecycle, metrics))
    origin = ServingOrigin(config.load_serving_token())
    app.include_router(_event_routes(config, lifecycle, validator, sink, origin))
    segment = SegmentIngest(config, validator, sink, metrics)
    app.include_router(_segment_routes(config, lifecycle, segment))
    app.openapi = _openapi_builder(app)  # type: ignore[method-assign]
    return app


def _ops_routes(lifecycle: ResourceLifecycle, metrics: CollectorMetrics) -> APIRouter:
    router = APIRouter(tags=["operations"])
    schema = event_json_schema()

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz", summary="The event log is open and recovered", responses={503: {"model": openapi.ErrorResponse}}
    )
    async def readyz() -> dict[str, str]:
        lifecycle.require_ready()
        return {"status": "ready"}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics.registry)

    @router.get("/v1/schema", summary="JSON Schema of a feedback event (v1)")
    async def event_schema() -> dict[str, Any]:
        return schema

    return router


def _event_routes(
    config: CollectorConfig,
    lifecycle: ResourceLifecycle,
    validator: EventValidator,
    sink: DurableSink,
    origin: ServingOrigin,
) -> APIRouter:
    router = APIRouter(tags=["events"])

    @router.post(
        "/v1/events",
        summary="Record feedback events",
        description="Each event gets its own result; the response is sent once the good ones are durable. "
        "200 if any event was not rejected, 422 (details: the per-event results) if all were. "
        'Events with source "serving" (the predictor\'s impressions) need the serving token. An event whose ts '
        "is more than max_future_skew_s after its arrival is rejected.",
        openapi_extra={**openapi.EVENTS_BODY, **openapi.EVENTS_SECURITY},
        response_model=openapi.IngestResponse,
        responses={
            422: {"model": openapi.ErrorResponse, "description": "Every event was rejected"},
            **openapi.SERVING_ERRORS,
            **openapi.ERRORS,
        },
    )
    async def post_events(request: Request) -> Response:
        lifecycle.require_ready()
        body = await read_body(request, config.max_body_bytes)
        items = events_in(parse_json(body), max_events=config.max_batch_events)
        origin.check(items, request.headers.get("authorization"))
        received_at = datetime.now(UTC)
        check = validator.check
        outcomes = [check(i, item, received_at=received_at, source=NATIVE_SOURCE) for i, item in enumerate(items)]
        await sink.write(outcomes, source=NATIVE_SOURCE)
        return _ingest_response(outcomes)

    return router


def _ingest_response(outcomes: list[Outcome]) -> Response:
    results = [o.as_result() for o in outcomes]
    counts = summarize(outcomes)
    if counts["rejected"] == len(outcomes):
        noun = "the event was" if len(outcomes) == 1 else f"all {len(outcomes)} events were"
        raise InvalidInput(f"{noun} rejected", details=results)
    return JSONResponse({"results": results, **counts})


def _segment_routes(config: CollectorConfig, lifecycle: ResourceLifecycle, segment: SegmentIngest) -> APIRouter:
    router = APIRouter(tags=["segment"])
    for path, message_type in SEGMENT_ENDPOINTS.items():
        body = openapi.SEGMENT_BATCH_BODY if message_type is None else openapi.SEGMENT_MESSAGE_BODY
        router.add_api_route(
            f"/v1/{path}",
            _segment_handler(config, lifecycle, segment, message_type),
            methods=["POST"],
            summary=f"Segment HTTP Tracking API: {message_type or 'batch'}",
            openapi_extra={**body, **openapi.SEGMENT_SECURITY},
            response_model=openapi.SegmentResponse,
            responses={
                401: {"model": openapi.ErrorResponse, "description": "Missing or unknown write key"},
                **openapi.ERRORS,
            },
            include_in_schema=len(path) > 1,  # the one-letter aliases behave the same; document once
        )
    return router


def _segment_handler(
    config: CollectorConfig, lifecycle: ResourceLifecycle, segment: SegmentIngest, message_type: str | None
) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        lifecycle.require_ready()
        payload = parse_json(await read_body(request, config.max_body_bytes))
        return JSONResponse(await segment.ingest(payload, message_type, request.headers.get("authorization")))

    return handle


def _openapi_builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(openapi.components())
            components.setdefault("securitySchemes", {}).update(openapi.SECURITY_SCHEMES)
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def run(config: CollectorConfig) -> int:
    """Run the collector under uvicorn until SIGTERM/SIGINT (graceful: in-flight requests finish, log sealed)."""
    serve_app(create_app(config), config.host, config.port)
    return 0


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    """The config file, then the command line's settings over it (validated together)."""
    secrets = Path(args.segment_secrets_dir) if args.segment_secrets_dir else None
    overrides = {
        "host": args.host,
        "port": args.port,
        "writer_id": args.writer_id,
        "event_log.wal_dir": args.wal_dir,
        "event_log.log_uri": args.log_uri,
        "segment.write_keys_file": str(secrets / "write-keys") if secrets else None,
        "segment.pseudonymization_key_file": str(secrets / "pseudonymization-key") if secrets else None,
        "serving_token_file": args.serving_token_file,
        "serving_token_create": False if args.serving_token_file else None,  # a mounted Secret: never made here
    }
    return load_config(CollectorConfig, args.config, overrides)


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop collector` (and `python -m serving.collector`): the same flags, parsed."""
    return run(config_from_args(args))


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.collector`."""
    return run_from_args(parser_for("serving.collector", flags.HELP, flags.add_arguments).parse_args(argv))

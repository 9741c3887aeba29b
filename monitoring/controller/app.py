"""The controller's service: Alertmanager's webhook, the kill switch, its actions, /metrics, /healthz, /readyz;
and its entry point, `kfloop controller` or `python -m monitoring.controller`.

    POST /v1/alerts            Alertmanager webhook (version 4), bearer token
    GET  /v1/status            paused?, open and recent actions
    GET  /v1/actions[/{id}]    the actions, newest first
    POST /v1/pause | /v1/resume {"operator": ..., "reason": ...}
"""

from __future__ import annotations

import argparse
import sys
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from pydantic import ValidationError
from starlette.responses import Response

from kfloop.audit.shipper import AuditRecorder
from kfloop.config import load_config
from kfloop.errors import InvalidInput, KfloopError, NotFound, NotReady, field_errors
from kfloop.experiments.store import ExperimentStore
from monitoring.controller import flags, openapi
from monitoring.controller.actions import Rollback, serving_target
from monitoring.controller.alerts import parse_notification
from monitoring.controller.auth import BearerToken, ensure_token_file
from monitoring.controller.config import DEFAULT_CONFIG, ControllerConfig
from monitoring.controller.engine import Controller, Recorder
from monitoring.controller.experiment import KIND, RunExperiment
from monitoring.controller.experiment_api import experiment_routes
from monitoring.controller.metrics import controller_registry
from monitoring.controller.retrain import Retrain
from monitoring.controller.runners import KfpRunner, LocalRunner, Runner
from monitoring.controller.store import ControllerStore
from serving.common.body import parse_json, read_body
from serving.common.http import install_error_handlers
from serving.common.lifecycle import ResourceLifecycle
from serving.common.metrics import RequestLatencyMiddleware, metrics_response, request_latency_histogram
from serving.common.service import serve_app, service_version


def build_controller(config: ControllerConfig, *, recorder: Recorder | None = None) -> Controller:
    """The controller and its action kinds, as the config says (not opened)."""
    target = serving_target(config)
    runner: Runner
    if config.mode == "cluster":
        runner = KfpRunner(config.retrain.kfp)
    else:
        runner = LocalRunner(config.runs_dir, config.retrain.command)
    experiments = ExperimentStore(config.experiments_db)
    kinds = {
        "rollback": Rollback(target, config.rollback),
        "retrain": Retrain(
            runner, target, config.retrain, config.rollback, experiment=KIND if config.experiment.enabled else None
        ),
        KIND: RunExperiment(target, config.experiment, experiments, config.rollback),
    }
    return Controller(
        ControllerStore(config.state_db),
        kinds,
        recorder or AuditRecorder(config.audit),
        actor=config.name,
        reconcile_interval_s=config.reconcile_interval_s,
        experiments=experiments,
    )


def create_app(config: ControllerConfig, controller: Controller | None = None) -> FastAPI:
    controller = controller or build_controller(config)
    lifecycle = ResourceLifecycle(controller, name="controller state", closed_message="controller stopped")
    registry = controller_registry(controller, config.experiment.metrics_retention_s)
    app = FastAPI(
        title="kfloop controller",
        version=service_version(),
        description="Acts on Prometheus alerts: rolls back canaries, retrains, records every decision.",
        lifespan=lifecycle.lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestLatencyMiddleware, histogram=request_latency_histogram("kfloop_controller", registry))
    token = BearerToken(config.token_file)

    def authorized(request: Request) -> None:
        token.check(request.headers.get("authorization"))

    def ready() -> Controller:
        lifecycle.require_ready()
        return controller

    guarded = [Depends(authorized)]
    app.include_router(_operations(controller, lifecycle, registry))
    app.include_router(_alert_routes(config, ready), dependencies=guarded)
    app.include_router(_control_routes(config, ready), dependencies=guarded)
    app.include_router(experiment_routes(ready), dependencies=guarded)
    app.openapi = _openapi_builder(app)  # type: ignore[method-assign]
    return app


def _operations(controller: Controller, lifecycle: ResourceLifecycle, registry: Any) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is up and its loop is not failing", responses=openapi.PLAIN_503)
    def healthz() -> dict[str, str]:
        if controller.failure is not None:
            raise NotReady(f"the reconcile loop is failing: {controller.failure}")
        return {"status": "ok"}

    @router.get("/readyz", summary="The state is open and the loop runs", responses=openapi.PLAIN_503)
    def readyz() -> dict[str, str]:
        lifecycle.require_ready()
        return {"status": "ready"}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        return metrics_response(registry)

    return router


def _view(row: Any) -> openapi.ActionView:
    return openapi.ActionView.model_validate(row.as_dict())


def _alert_routes(config: ControllerConfig, ready: Any) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    @router.post(
        "/v1/alerts",
        summary="Alertmanager webhook",
        description="Remembers every alert; a firing alert never seen before (by fingerprint and start time) is "
        "acted on as its `action` label says, in the background. A repeat or a resolution does nothing more.",
        openapi_extra=openapi.WEBHOOK_BODY,
        response_model=openapi.ReceiveResponse,
        responses=openapi.errors(400, 401, 413, 503),
    )
    async def receive(request: Request) -> openapi.ReceiveResponse:
        controller = ready()
        notification = parse_notification(parse_json(await read_body(request, config.max_body_bytes)))
        decided = controller.receive(notification)
        new = sum(len(row.alerts) for row in decided)
        return openapi.ReceiveResponse(
            alerts=len(notification.alerts), new=new, actions=[_view(row) for row in decided]
        )

    return router


def _control_routes(config: ControllerConfig, ready: Any) -> APIRouter:
    router = APIRouter(tags=["control"])

    @router.get("/v1/status", summary="Paused?, open and recent actions", responses=openapi.errors(401, 503))
    def status() -> openapi.StatusResponse:
        controller = ready()
        store = controller.store
        return openapi.StatusResponse(
            paused=controller.paused(),
            mode=config.mode,
            open=[_view(row) for row in store.open_actions()],
            recent=[_view(row) for row in store.recent_actions(20)],
        )

    @router.get("/v1/actions", summary="Actions, newest first", responses=openapi.errors(401, 422, 503))
    def actions(
        limit: Annotated[int, Query(ge=1, le=1000, description="how many")] = 50,
        kind: Annotated[str | None, Query(max_length=64, description="only this kind (rollback, retrain, ...)")] = None,
    ) -> list[openapi.ActionView]:
        return [_view(row) for row in ready().store.recent_actions(limit, kind)]

    @router.get("/v1/actions/{action_id}", summary="One action", responses=openapi.errors(401, 404, 422, 503))
    def action(action_id: str) -> openapi.ActionView:
        row = ready().store.action(action_id)
        if row is None:
            raise NotFound(f"no action {action_id!r}")
        return _view(row)

    @router.post(
        "/v1/pause",
        summary="Kill switch on: alerts are recorded, nothing is done",
        openapi_extra=openapi.SWITCH_BODY,
        response_model=openapi.ActionView,
        responses=openapi.errors(400, 401, 413, 422, 503),
    )
    async def pause(request: Request) -> openapi.ActionView:
        body = await _switch_request(request)
        return _view(ready().pause(body.operator, body.reason))

    @router.post(
        "/v1/resume",
        summary="Kill switch off: act again",
        openapi_extra=openapi.SWITCH_BODY,
        response_model=openapi.ActionView,
        responses=openapi.errors(400, 401, 413, 422, 503),
    )
    async def resume(request: Request) -> openapi.ActionView:
        body = await _switch_request(request)
        return _view(ready().resume(body.operator, body.reason))

    return router


async def _switch_request(request: Request) -> openapi.SwitchRequest:
    """Parsed here, after the token was checked (a body FastAPI parsed would be judged before the token)."""
    data = parse_json(await read_body(request, openapi.SWITCH_MAX_BYTES))
    try:
        return openapi.SwitchRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the body is not {operator, reason}", details=field_errors(exc)) from None


def _openapi_builder(app: FastAPI) -> Any:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(openapi.SECURITY_SCHEMES)
            for path, methods in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in methods.values():
                        operation["security"] = [{"bearerToken": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def prepare(config: ControllerConfig) -> FastAPI:
    """The app, once the token is in place (a config problem is a KfloopError)."""
    ensure_token_file(config.token_file, config.create_token_file)
    return create_app(config)


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop controller` and `python -m monitoring.controller`: the config file, then the flags; a config
    problem is one line on stderr, exit 2."""
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        config = load_config(ControllerConfig, path, flags.overrides(args))
        app = prepare(config)
    except KfloopError as exc:
        print(f"controller: {exc.message}", file=sys.stderr)
        return 2
    serve_app(app, config.host, config.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.controller", description=flags.HELP)
    flags.add_arguments(parser)
    return run_from_args(parser.parse_args(argv))

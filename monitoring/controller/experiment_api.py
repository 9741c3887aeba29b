"""The controller's experiment endpoints: start one for a deployable version, approve the last step to 100%
(`kfloop approve`), and read them (the experiment store, kfloop.experiments.store, is the record)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, ValidationError

from kfloop.config import StrictModel
from kfloop.errors import Conflict, InvalidInput, NotReady, field_errors
from kfloop.experiments.store import ExperimentStore
from monitoring.controller import openapi
from monitoring.controller.engine import Controller
from monitoring.controller.experiment import KIND
from serving.common.body import parse_json, read_body


class StartRequest(StrictModel):
    """Start an experiment for a deployable version."""

    candidate: str = Field(min_length=1, max_length=128)
    """The model version to try (blessed, in the registry)."""
    operator: str = Field(min_length=1, max_length=128)
    """Who asked (recorded)."""


def experiment_routes(ready: Any) -> APIRouter:
    router = APIRouter(tags=["experiments"])

    def store(controller: Controller) -> ExperimentStore:
        if controller.experiments is None:
            raise NotReady("this controller keeps no experiments")
        return controller.experiments

    @router.post(
        "/v1/experiments",
        summary="Start an experiment",
        responses=openapi.errors(400, 401, 409, 413, 422, 503),
        openapi_extra=openapi.json_body(StartRequest, "The candidate version, and who asks"),
    )
    async def start(request: Request) -> dict[str, Any]:
        body = _parsed(StartRequest, parse_json(await read_body(request, openapi.SWITCH_MAX_BYTES)))
        controller: Controller = ready()
        refusal = controller.kinds[KIND].admit(controller.store, controller.clock())
        if refusal is not None:
            raise Conflict(refusal[1])
        row = controller.open_action(KIND, {"candidate": body.candidate, "asked_by": body.operator})
        return row.as_dict()

    @router.post(
        "/v1/experiments/{experiment_id}/approve",
        summary="Approve 100%",
        responses=openapi.errors(400, 401, 404, 409, 413, 422, 503),
        openapi_extra=openapi.SWITCH_BODY,
    )
    async def approve(experiment_id: str, request: Request) -> dict[str, Any]:
        body = _parsed(openapi.SwitchRequest, parse_json(await read_body(request, openapi.SWITCH_MAX_BYTES)))
        controller: Controller = ready()
        approved = store(controller).approve(experiment_id, body.operator, controller.clock())
        said = f": {body.reason}" if body.reason else ""
        row = controller.note(
            "approve",
            body.operator,
            "approved",
            f"experiment {experiment_id}: {approved.model_version} approved for 100%{said}",
            {"experiment": experiment_id, "approved_at": approved.approved_at},
            model_version=approved.model_version,
        )
        controller.flush_outbox()
        return row.as_dict()

    @router.get("/v1/experiments", summary="Experiments, newest first", responses=openapi.errors(401, 503))
    def listed() -> list[dict[str, Any]]:
        return [asdict(e) for e in store(ready()).list_experiments()]

    @router.get(
        "/v1/experiments/{experiment_id}", summary="One experiment", responses=openapi.errors(401, 404, 422, 503)
    )
    def one(experiment_id: str) -> dict[str, Any]:
        experiments = store(ready())
        found = asdict(experiments.get(experiment_id))
        for stage in found["stages"]:
            last = experiments.last_observation(experiment_id, stage["index"])
            stage["last_observation"] = asdict(last) if last else None
            if stage["preregistration"] is not None:
                stage["preregistration"] = experiments.stage(experiment_id, stage["index"]).preregistration.model_dump(
                    mode="json"
                )
        return found

    return router


def _parsed(model: Any, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"the body is not a {model.__name__}", details=field_errors(exc)) from None

"""The routing table: which predictors serve stable traffic, which serve the canary, and the canary's share.

Written atomically by `kfloop serve` (only once the predictors in it are ready), read by the router. During an
experiment the canary names it: its arms are sticky (kfloop.experiments.arms), and a `shadow` canary is
mirrored every request and serves none.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kfloop.experiments.arms import CANDIDATE, arm_of


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...] = Field(min_length=1)
    """Base URLs of the version's predictor processes (its replicas, as the pods of a revision); the router
    sends each request to the one with the fewest requests in flight."""
    version: str
    """Model version it serves."""


class CanaryRoute(Route):
    percent: int = Field(ge=0, le=100)
    """Share of requests sent to the canary: drawn per request, or per user during an experiment."""
    mode: Literal["canary", "shadow"] = "canary"
    """canary: serves its share; shadow: serves nothing, and is sent a copy of every request."""
    experiment: str | None = None
    """The experiment it is the candidate of: its users are split by a hash of their id and this, not per
    request; None: no experiment (a per-request draw, as KServe's canaryTrafficPercent)."""


class Routes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stable: Route | None = None
    canary: CanaryRoute | None = None

    def pick(self, draw: float, user_id: str | None = None) -> str:
        """`canary` or `stable`: during an experiment by the user's sticky arm, else by a uniform draw in [0, 1)
        (also for a request naming no user, which no arm can hold)."""
        canary = self.canary
        if canary is None or canary.mode == "shadow":
            return "stable"
        if canary.experiment is not None and user_id is not None:
            return "canary" if arm_of(canary.experiment, user_id, canary.percent) == CANDIDATE else "stable"
        return "canary" if draw * 100 < canary.percent else "stable"

    @property
    def shadow(self) -> CanaryRoute | None:
        """The canary when it runs in shadow: mirrored, never served."""
        return self.canary if self.canary is not None and self.canary.mode == "shadow" else None

    def route(self, variant: str) -> Route | None:
        return self.canary if variant in ("canary", "shadow") else self.stable


def read_routes(path: Path) -> Routes:
    if not path.exists():
        return Routes()
    return Routes.model_validate_json(path.read_text())


def write_routes(path: Path, routes: Routes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_text(json.dumps(routes.model_dump(mode="json"), indent=2) + "\n")
    os.replace(temp, path)

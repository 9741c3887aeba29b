"""The routing table: which predictors serve stable traffic, which serve the canary, and the canary's share.

Written atomically by `kfloop serve` (only once the predictors in it are ready), read by the router.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...] = Field(min_length=1)
    """Base URLs of the version's predictor processes (its replicas, as the pods of a revision); the router
    sends each request to the one with the fewest requests in flight."""
    version: str
    """Model version it serves."""


class CanaryRoute(Route):
    percent: int = Field(ge=0, le=100)
    """Share of requests sent to the canary, drawn per request."""


class Routes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stable: Route | None = None
    canary: CanaryRoute | None = None

    def pick(self, draw: float) -> str:
        """`canary` or `stable` for a uniform draw in [0, 1)."""
        if self.canary is not None and draw * 100 < self.canary.percent:
            return "canary"
        return "stable"

    def route(self, variant: str) -> Route | None:
        return self.canary if variant == "canary" else self.stable


def read_routes(path: Path) -> Routes:
    if not path.exists():
        return Routes()
    return Routes.model_validate_json(path.read_text())


def write_routes(path: Path, routes: Routes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_text(json.dumps(routes.model_dump(mode="json"), indent=2) + "\n")
    os.replace(temp, path)

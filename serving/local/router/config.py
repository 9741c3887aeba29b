"""Configuration of the local router (the stand-in for Knative's per-request traffic split)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kfloop.config import StrictModel


class RouterConfig(StrictModel):
    """Splits predictor requests between the stable and the canary predictor, per request."""

    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = Field(default=8086, ge=0, le=65535)
    """Port to listen on."""
    routes_file: Path = Path(".kfloop/serving/routes.json")
    """The routing table (stable and canary URLs, canary percentage), written by `kfloop serve` once the
    predictors are ready; re-read when it changes."""
    reload_interval_s: float = Field(default=0.25, gt=0)
    """How often the routing table file is checked for changes."""
    request_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of one call to a predictor."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body accepted (413 beyond)."""
    seed: int | None = None
    """Seed of the split's random draws; None draws it from the OS. Tests set it."""

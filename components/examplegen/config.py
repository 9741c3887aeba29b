"""ExampleGen's configuration: its two sections of the pipeline config (`window`, `examples`) and the task's
input, those sections plus what it reads (the event log and feature store, the registry)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kfloop.config import StrictModel
from kfloop.features.config import FeaturesConfig


class WindowConfig(StrictModel):
    """Which events a run trains and evaluates on, and how they split."""

    mode: Literal["rolling", "since_last_run"] = "rolling"
    """rolling: the `days` before `end`; since_last_run: from the end of the last registered version's window
    (or `days` before `end` when there is none) to `end`."""
    days: float = Field(default=7.0, gt=0)
    """Length of a rolling window, in days."""
    end: str = "latest"
    """End of the window (exclusive): `latest` (just after the newest event in the log), `now`, or an RFC 3339
    time."""
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    """The most recent requests making up this fraction of the window are the eval split; the rest train.
    Split by time, never at random: no training request is later than an eval one."""
    max_requests: int | None = Field(default=None, ge=10)
    """Keep only this many most recent requests (a small profile for tests); None keeps all."""
    attribution_s: float = Field(default=1800.0, gt=0)
    """A click without a request id counts for the latest impression of that user and item this many seconds
    before it."""


class ExamplesConfig(StrictModel):
    """How ExampleGen joins features."""

    feature_join: Literal["asof", "feast"] = "asof"
    """`feast`: Feast's get_historical_features (the reference; ~5 ms per row on the file offline store);
    `asof`: the same point-in-time join on the same offline tables with pandas (pinned equal by a test)."""
    refresh_features: bool = True
    """Recompute the offline aggregate tables from the event log up to the window's end before the join
    (off when the features side's own job keeps them current)."""


class ExampleGenTask(StrictModel):
    """What the examplegen task is given (its pipeline parameter, as JSON)."""

    window: WindowConfig = Field(default_factory=WindowConfig)
    """Training window and split."""
    examples: ExamplesConfig = Field(default_factory=ExamplesConfig)
    """How examples get their features."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """The event log the window is read from, and the Feast feature store the features are joined from."""
    registry_uri: str
    """The model registry (a `since_last_run` window starts where the newest registered version's ended)."""

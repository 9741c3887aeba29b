"""The simulator's settings: one typed config, from an optional YAML file and `kfloop simulate`'s flags."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from kfloop.config import StrictModel

DEFAULT_DURATION_S = 300.0
DEFAULT_LOGIT_SHIFT = 2.0
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


def check_http_url(value: str) -> str:
    """An `http://host[:port]` base URL (the simulator speaks plain HTTP on the addresses it is given)."""
    parts = urlsplit(value)
    if parts.scheme != "http":
        raise ValueError("must start with http:// (the simulator speaks plain HTTP)")
    if not parts.hostname:
        raise ValueError("must name a host, e.g. http://127.0.0.1:8080")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError("must be a base URL, http://host:port, without path, query or credentials")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise ValueError(f"has a bad port: {exc}") from None
    return value.rstrip("/")


class ShiftConfig(StrictModel):
    """The `shift` scenario: at a chosen time a share of users like different items."""

    kind: Literal["fatigue", "reshuffle"] = "fatigue"
    """fatigue: the users tire of the `feature` categories they were shown most (a model can learn it from the
    item's inputs); reshuffle: each user's item appeal is permuted at random, a permutation per user (only
    per-user history can learn it)."""
    feature: Literal["item_feature_1", "item_feature_2", "item_feature_3"] = "item_feature_3"
    """fatigue: the OBD item category whose most-shown values fall out of favour (item_feature_3: 7 values, so
    each holds many items and a retrained model sees every one of them often)."""
    strength: float = Field(default=3.0, gt=0, le=10)
    """fatigue: how much the falling items lose on the click logit (3.0: their odds of a click / 20)."""
    shown_share: float = Field(default=0.5, gt=0, le=1)
    """fatigue: the falling categories are the fewest that filled at least this share of the slots served before
    the shift. More falls harder, but leaves a retrained model less to turn to: in a demo run at 0.67 two
    categories fell, 87% of the served slots, and the rest clicked about as rarely as they did (no candidate
    learned it); at 0.5 one fell (64% of the slots) and the candidate's CTR was 1.66 times v1's before the shift."""

    at_s: float = Field(default=60.0, ge=0)
    """Seconds after the start (by the schedule: request i is at i / rate) when the shift happens."""
    share: float = Field(default=0.5, ge=0, le=1)
    """Share of the users whose preferences change (the others keep theirs)."""


class SimulateConfig(StrictModel):
    """`kfloop simulate`: synthetic OBD users ranking through the front door and clicking into the collector."""

    transformer_url: str = "http://127.0.0.1:8080"
    """The front door (the transformer's V1 endpoint); nothing else is ever called for rankings."""
    collector_url: str = "http://127.0.0.1:8090"
    """The feedback collector (`POST /v1/events`)."""
    model_name: str = "kfloop-ranker"
    """The model name in the ranking route."""
    rate: float = Field(default=20.0, gt=0, le=5000)
    """Rankings per second, sent on a fixed schedule whatever the answers do (open loop)."""
    duration_s: float | None = Field(default=None, gt=0)
    """Stop scheduling after this many seconds (default: 300 s unless `requests` is given)."""
    requests: int | None = Field(default=None, ge=1)
    """Stop after this many rankings (with `duration_s` too: whichever comes first)."""
    max_in_flight: int = Field(default=64, ge=1, le=4096)
    """Rankings waiting for an answer at most; one due beyond that is skipped and counted, never queued."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Per HTTP request (a ranking or a feedback batch)."""
    seed: int = Field(default=0, ge=0)
    """Seeds the users, which user sends each request, the clicks and the shift: the same seed, the same run."""
    world_seed: int = Field(default=0, ge=0)
    """Seeds the click model's synthetic cohort x item interaction (who likes what); keep it to compare runs."""
    run_id: str | None = None
    """Names this run's request and event ids and its output folder (default: a new random one)."""
    users: int = Field(default=1000, ge=1, le=10_000_000)
    """Synthetic users, each drawn from an OBD cohort by the cohort's share of the logs."""
    logit_shift: float = Field(default=DEFAULT_LOGIT_SHIFT, ge=-10, le=10)
    """Base-rate scale: added to every click logit. 0 keeps OBD's CTR (0.38% per slot for a random slate, too
    few clicks to see anything for hours); the default 2.0 gives 2.7% for a random slate and 9.4% for each
    cohort's best three items, so a better ranker shows within minutes at 20 rankings/s."""
    interaction_scale: float = Field(default=0.5, ge=0, le=5)
    """Standard deviation of the synthetic cohort x item term on the logit scale (what personalization can learn)."""
    scenario: str = "steady"
    """What happens during the run: `steady`, or `shift` (see `shift`)."""
    shift: ShiftConfig = Field(default_factory=ShiftConfig)
    """Parameters of the `shift` scenario."""
    consent: bool = True
    """Send `consent` (personalization and analytics granted) in each ranking request."""
    dwell: bool = False
    """Also send a `dwell` event (log-normal, median 20 s) for each click."""
    data_dir: Path = Path("data")
    """Where `kfloop data fetch` put the OBD sample the click model is fitted on."""
    out_dir: Path = Path(".kfloop/simulate")
    """Each run writes `{out_dir}/{run_id}/`: rankings.jsonl (the ground truth) and run.json."""
    progress: bool = True
    """Print the live progress line on stderr."""

    @field_validator("transformer_url", "collector_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not _RUN_ID.fullmatch(value):
            raise ValueError("must be 1-40 characters of letters, digits and . _ -, starting with a letter or digit")
        return value

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        from kfloop.simulate.scenarios import SCENARIOS

        if value not in SCENARIOS:
            raise ValueError(f"unknown scenario {value!r}; known: {', '.join(sorted(SCENARIOS))}")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.duration_s is None and self.requests is None:
            self.duration_s = DEFAULT_DURATION_S
        if self.planned_requests < 1:
            raise ValueError(f"duration_s {self.duration_s} at rate {self.rate}/s schedules no request")
        return self

    @property
    def planned_requests(self) -> int:
        """How many rankings the schedule holds (the smaller of `requests` and rate x duration)."""
        by_time = math.floor(self.rate * self.duration_s + 1e-9) if self.duration_s is not None else None
        bounds = [b for b in (by_time, self.requests) if b is not None]
        return min(bounds)

"""What a stage's sequential test is fixed to before it starts, and the counts it is evaluated on."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kfloop.audit.canonical import canonical_json, rfc3339
from kfloop.config import StrictModel


class Preregistration(StrictModel):
    """The parameters of one stage's non-inferiority test, written (and hashed) before the stage starts.

    Immutable: a changed parameter is a new preregistration with a new digest.
    """

    model_config = ConfigDict(frozen=True)

    margin: float = Field(gt=0, lt=1)
    """Non-inferiority margin, absolute in the metric's units: 0.01 means the candidate may be at most one CTR
    point below production (candidate CTR - production CTR > -margin) to be promoted."""
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    """Error rate: the chance of promoting a candidate worse by the margin or more (and, separately, of
    calling a non-inferior candidate inferior), however often the test is looked at."""
    min_samples: int = Field(ge=1)
    """Candidate-arm impressions before any decision: below it the answer is always "continue" (the normal
    approximation needs some clicks in each arm)."""
    max_samples: int = Field(ge=1)
    """Candidate-arm impressions at which an undecided stage ends, as `on_max_sample` says."""
    metric: str = Field(default="ctr", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    """Name of the Bernoulli metric the arms are counted on (clicks per impression), for reports and metrics."""
    on_max_sample: Literal["rollback", "promote"] = "rollback"
    """What an undecided stage does at `max_samples`."""
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    """When it was registered (timezone required; kept in UTC)."""

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _max_not_below_min(self) -> Preregistration:
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) is below min_samples ({self.min_samples})")
        return self

    def canonical(self) -> bytes:
        """The byte form the digest is computed over: sorted-key compact JSON, the timestamp in RFC 3339 UTC."""
        return canonical_json({**self.model_dump(mode="json"), "created_at": rfc3339(self.created_at)})

    def digest(self) -> str:
        """sha256 (hex) of `canonical()`: the preregistration's identity in the audit trail."""
        return hashlib.sha256(self.canonical()).hexdigest()


class ArmCounts(StrictModel):
    """One arm's cumulative impressions and clicks (each impression clicked at most once)."""

    model_config = ConfigDict(frozen=True)

    impressions: int = Field(ge=0)
    """Impressions served by this arm so far."""
    clicks: int = Field(ge=0)
    """Clicked impressions among them."""

    @field_validator("clicks")
    @classmethod
    def _clicks_within_impressions(cls, clicks: int, info: ValidationInfo) -> int:
        impressions = info.data.get("impressions")
        if impressions is not None and clicks > impressions:
            raise ValueError(f"clicks ({clicks}) exceed impressions ({impressions})")
        return clicks

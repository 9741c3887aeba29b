"""What the registry keeps about each version: its model card and its deployment state."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class State(StrEnum):
    BLESSED = "blessed"  # passed the evaluator's rules: offered for deployment
    UNBLESSED = "unblessed"  # kept for the record and comparison; never offered for deployment
    FORCED = "forced"  # not blessed, offered anyway because an operator said so (who and why are recorded)


DEPLOYABLE = frozenset({State.BLESSED, State.FORCED})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Blessing(_Frozen):
    """The evaluator's verdict and why."""

    blessed: bool
    """True when every blessing rule passed (or the evidence was thin and the config blesses flagged)."""
    low_evidence: bool = False
    """The data was too thin to decide; with `blessed` this is a flagged blessing."""
    reasons: list[str] = Field(default_factory=list)
    """One line per rule: what was compared, the numbers, pass or fail."""
    reference: str = ""
    """What the candidate was compared with: `production:VERSION` or `logging-policy`."""


class ModelCard(_Frozen):
    """Everything needed to know what a version is, where it came from and why it is (not) deployable."""

    card_version: Literal["1"] = "1"
    """Version of this card's layout."""
    version: str
    """The version id: `v{UTC time}-{fingerprint[:8]}`, sortable by creation time."""
    created_at: str
    """When it was registered, RFC 3339 UTC."""
    fingerprint: str
    """sha256 of data, schema and code versions and parameters: the same inputs register once."""
    data_version: str
    """Content hash of the training and evaluation examples."""
    data: dict[str, Any] = Field(default_factory=dict)
    """The data window, split and row and click counts."""
    schema_version: str
    """Content hash of the schema the data was validated against."""
    code_version: str
    """Package version plus a hash of the pipeline's source."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Training and evaluation parameters."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """TFMA metrics, overall and by slice (a slice too small to measure says so)."""
    ope: dict[str, Any] = Field(default_factory=dict)
    """Off-policy value estimates (IPS, SNIPS, DR with 95% intervals) of this model and its reference."""
    blessing: Blessing
    """The evaluator's verdict."""
    artifacts: dict[str, str] = Field(default_factory=dict)
    """Files of this version, relative to its folder (e.g. model, explainer, baseline.json)."""
    pipeline_run: str = ""
    """The pipeline run that produced it, where known."""


class StatusChange(_Frozen):
    """One change of a version's state."""

    at: str
    """When, RFC 3339 UTC."""
    state: State
    """The state it moved to."""
    by: str
    """Who: `pipeline` for the evaluator's verdict, else the operator's name."""
    reason: str
    """Why, in words."""


class VersionStatus(_Frozen):
    """The mutable part of a version: its state and how it got there."""

    state: State
    """Current state."""
    history: list[StatusChange]
    """Every change, oldest first."""

    @property
    def deployable(self) -> bool:
        return self.state in DEPLOYABLE

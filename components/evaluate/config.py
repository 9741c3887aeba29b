"""Evaluate's configuration: the `evaluate` section of the pipeline config (with its blessing rules), and the
task's input (that section plus the registry, where the production model to compare with is)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.beam import BeamConfig
from kfloop.config import StrictModel


class BlessingConfig(StrictModel):
    """Rules a candidate must pass to be offered for deployment."""

    dr_margin: float = Field(default=0.001, ge=0)
    """The 95% lower bound of (candidate - reference) doubly robust value, paired on the same rows, may be at
    most this far below 0 (absolute, in clicks per impression slot: 0.001 is a tenth of a CTR point)."""
    max_slice_auc_drop: float = Field(default=0.05, ge=0, le=1)
    """No measurable slice's AUC may be this much below the production model's on the same slice."""
    on_low_evidence: Literal["block", "bless_flagged"] = "block"
    """When the data is too thin to decide: block the candidate, or bless it flagged as low-evidence."""


class EvaluateConfig(StrictModel):
    """TFMA metrics, slices, and off-policy evaluation."""

    slice_features: list[str] = Field(default_factory=lambda: ["position", "user_feature_0"])
    """Features the metrics are sliced by (the fairness review): position and a user segment."""
    min_slice_examples: int = Field(default=100, ge=1)
    """A slice with fewer examples is reported as too small to measure."""
    min_slice_positives: int = Field(default=10, ge=1)
    """A slice with fewer positive (or negative) labels is reported as too small to measure."""
    calibration_bins: int = Field(default=10, ge=2)
    """Buckets of the calibration plot."""
    slate_size: int = Field(default=3, ge=1)
    """Positions of a slate (the OBD sample has 3)."""
    exploration: Literal["epsilon_greedy", "softmax"] = "epsilon_greedy"
    """The exploration policy serving wraps the model in; its propensities give the model's policy value."""
    epsilon: float = Field(default=0.1, ge=0, le=1)
    """epsilon of epsilon-greedy exploration."""
    temperature: float = Field(default=1.0, gt=0)
    """Temperature of softmax exploration, in logit units."""
    bootstrap_resamples: int = Field(default=1000, ge=10)
    """Bootstrap resamples behind each 95% interval."""
    seed: int = 7
    """Seed of the bootstrap."""
    blessing: BlessingConfig = Field(default_factory=BlessingConfig)
    """The blessing rules."""


class EvaluateTask(StrictModel):
    """What the evaluate task is given (its pipeline parameter, as JSON)."""

    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Evaluation and blessing."""
    registry_uri: str
    """The model registry: its newest deployable version is the production model the candidate is compared with."""
    beam: BeamConfig = Field(default_factory=BeamConfig)
    """The Beam runner of its TFMA pipeline."""

"""Validate's configuration: the `validation` section of the pipeline config, and the task's input (that
section plus the registry, where the previous span's statistics are and a rejected span's report goes)."""

from __future__ import annotations

from pydantic import Field

from components.beam import BeamConfig
from kfloop.config import StrictModel


class ValidationConfig(StrictModel):
    """Statistics, the schema contract, drift and skew."""

    schema_path: str = ""
    """The committed TFDV schema (text proto); empty means `pipelines/schema/schema.pbtxt` of the package."""
    drift_linf: float = Field(default=0.1, gt=0, le=1)
    """Drift of a categorical feature against the previous span above this L-infinity distance is flagged."""
    drift_jsd: float = Field(default=0.1, gt=0, le=1)
    """Drift of a numeric feature against the previous span above this Jensen-Shannon divergence is flagged."""
    skew_linf: float = Field(default=0.1, gt=0, le=1)
    """Skew between the train and eval splits above this L-infinity distance is flagged."""
    fail_on_drift: bool = False
    """Stop the run when drift or skew is flagged (else they are reported as metrics only)."""
    baseline_bins: int = Field(default=10, ge=2, le=100)
    """Bins of each numeric feature's baseline histogram (what serving watches for drift)."""
    baseline_top_k: int = Field(default=50, ge=1)
    """Values of each categorical feature's baseline histogram kept by frequency; the rest go to `__other__`."""


class ValidateTask(StrictModel):
    """What the validate task is given (its pipeline parameter, as JSON)."""

    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    """Data validation."""
    registry_uri: str
    """The model registry: the previous span's statistics (for drift), and where a rejected span's report goes."""
    beam: BeamConfig = Field(default_factory=BeamConfig)
    """The Beam runner of its TFDV statistics pipeline."""

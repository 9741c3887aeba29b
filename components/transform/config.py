"""Transform's configuration: the `transform` section of the pipeline config, and the task's input (that section
plus the Beam runner its analyze pass runs on)."""

from __future__ import annotations

from pydantic import Field

from components.beam import BeamConfig
from kfloop.config import StrictModel


class TransformConfig(StrictModel):
    """tf.Transform's preprocessing."""

    oov_buckets: int = Field(default=1, ge=1)
    """Out-of-vocabulary buckets of every vocabulary (values unseen in training share them)."""
    vocab_top_k: int | None = Field(default=None, ge=1)
    """Keep only this many most frequent values per vocabulary; None keeps all."""


class TransformTask(StrictModel):
    """What the transform task is given (its pipeline parameter, as JSON)."""

    transform: TransformConfig = Field(default_factory=TransformConfig)
    """tf.Transform's preprocessing."""
    beam: BeamConfig = Field(default_factory=BeamConfig)
    """The Beam runner of the analyze pass."""

"""Transform's configuration: the `transform` section of the pipeline config, which is all the task is given."""

from __future__ import annotations

from pydantic import Field

from kfloop.config import StrictModel


class TransformConfig(StrictModel):
    """tf.Transform's preprocessing."""

    oov_buckets: int = Field(default=1, ge=1)
    """Out-of-vocabulary buckets of every vocabulary (values unseen in training share them)."""
    vocab_top_k: int | None = Field(default=None, ge=1)
    """Keep only this many most frequent values per vocabulary; None keeps all."""
    beam_workers: int = Field(default=1, ge=1)
    """DirectRunner workers for the analyze pass."""

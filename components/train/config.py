"""Train's configuration: the `train` section of the pipeline config, which is all the task is given."""

from __future__ import annotations

from pydantic import Field

from kfloop.config import StrictModel


class TrainConfig(StrictModel):
    """The Keras ranking model and its propensity-weighted loss."""

    epochs: int = Field(default=5, ge=1)
    """Passes over the training split."""
    batch_size: int = Field(default=256, ge=1)
    """Examples per gradient step."""
    learning_rate: float = Field(default=0.005, gt=0)
    """Adam's learning rate."""
    embedding_dim: int = Field(default=8, ge=1)
    """Size of each categorical feature's embedding."""
    hidden_units: list[int] = Field(default_factory=lambda: [32])
    """Widths of the relevance tower's hidden layers."""
    seed: int = 42
    """Seed of every random number generator in training (weights, shuffling)."""
    max_inverse_propensity: float = Field(default=100.0, ge=1)
    """Inverse propensities are clipped at this value before they weight the loss (bounds the variance)."""
    implicit_weight: float = Field(default=3.0, ge=0)
    """Weight of an implicit example (an impression labelled by whether it was clicked)."""
    explicit_weight: float = Field(default=1.0, ge=0)
    """Weight of an explicit example (a rating or thumb on an item, labelled positive or negative)."""
    serving_position: int = Field(default=1, ge=1)
    """The position the bias term is fixed at when serving: scores are click rates as if shown there."""
    max_position: int = Field(default=10, ge=1)
    """Positions 1..max_position get a bias each; beyond it, or none (explicit feedback), share one more."""

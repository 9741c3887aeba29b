"""Configuration of the explainer (Alibi 0.9.4: IntegratedGradients and AnchorTabular)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kfloop.config import StrictModel
from serving.common.names import MODEL_NAME

"""How explanations name their explainer in the audit trail (an audit Identifier)."""


class IntegratedGradientsConfig(StrictModel):
    """Attributions of a shown item's score to its input features, through the numeric explainer sub-model."""

    method: Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"] = (
        "gausslegendre"
    )
    """Alibi's integration method."""
    n_steps: int = Field(default=32, ge=2, le=500)
    """Points on the path from the baseline (the mean training input) to the item's input."""
    internal_batch_size: int = Field(default=256, ge=1)
    """Path points per gradient batch."""
    top_features: int = Field(default=10, ge=1)
    """Features listed per item, largest absolute attribution first (all are kept under `by_feature`)."""


class AnchorConfig(StrictModel):
    """Readable rules for why an item made the slate, among the request's own candidates."""

    threshold: float = Field(default=0.95, gt=0, le=1)
    """Precision a rule must reach: with the rule's conditions held and every other item feature drawn from the
    request's other candidates, the item stays in (or out of) the top slots this often. A readable explanation
    gives a rule as the reason only at this precision; below it, it says no rule reached it and names the best."""
    batch_size: int = Field(default=100, ge=10)
    """Samples per precision estimate."""
    coverage_samples: int = Field(default=1000, ge=100)
    """Samples to estimate a rule's coverage."""
    beam_size: int = Field(default=1, ge=1)
    """Candidate rules kept per step."""
    max_anchor_size: int | None = Field(default=4, ge=1)
    """Most conditions in a rule."""
    seed: int = 0
    """Seed of the sampler: the same decision is explained the same way."""
    percentiles: list[int] = Field(default_factory=lambda: [25, 50, 75])
    """Where numeric features are cut into ranges."""


class ExplainerConfig(StrictModel):
    """The explainer service (a kserve.Model with explain()) and the `kfloop audit explain` explainer."""

    model_name: str = MODEL_NAME
    """Name in the V1 path (/v1/models/NAME:explain)."""
    registry_uri: str = ".kfloop/registry"
    """The model registry: each decision is explained with the version that made it."""
    model_version: str | None = None
    """Version for requests that name none; None: the latest deployable."""
    cache_dir: Path = Path(".kfloop/serving/cache")
    """Where versions from a remote registry are copied to."""
    max_loaded_versions: int = Field(default=3, ge=1)
    """Versions kept loaded at once (least recently used ones are dropped)."""
    integrated_gradients: IntegratedGradientsConfig = Field(default_factory=IntegratedGradientsConfig)
    """Integrated Gradients."""
    anchor: AnchorConfig = Field(default_factory=AnchorConfig)
    """AnchorTabular."""
    max_instances: int = Field(default=16, ge=1)
    """Most instances in one explain request."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """REST port of the model server."""

"""Configuration of the transformer: where features come from, where the predictor and explainer are."""

from __future__ import annotations

from pydantic import Field

from kfloop.config import StrictModel
from kfloop.features.config import FeaturesConfig
from serving.common.consent import ConsentDefault
from serving.common.names import MODEL_NAME


class TransformerConfig(StrictModel):
    """The version-agnostic transformer in front of the predictor (KServe's transformer component)."""

    model_name: str = MODEL_NAME
    """Name in the V1/V2 paths; the same as the predictor's."""
    predictor_url: str | None = None
    """Base URL of the predictor (locally: the router, which splits stable/canary); None: KServe's
    --predictor_host argument, as the InferenceService controller passes it."""
    explainer_url: str | None = None
    """Base URL of the explainer service for :explain; None: explanations are not offered here."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """The Feast feature store the fast online reader reads (user and user x item features; item context in
    memory); the same section `kfloop features` uses."""
    item_reload_interval_s: float = Field(default=60.0, gt=0)
    """How often to check whether item context was re-materialized (then it is re-read, with the catalog)."""
    request_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of a call to the predictor."""
    explain_timeout_s: float = Field(default=60.0, gt=0)
    """Timeout of a call to the explainer."""
    max_instances: int = Field(default=64, ge=1)
    """Most instances (rankings) in one V1 request."""
    max_candidates: int = Field(default=1000, ge=1, le=1000)
    """Most candidates one ranking may name (without any, the whole catalog is ranked)."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """REST port of the model server."""
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Open Inference Protocol over gRPC (KServe's GRPCInferenceService: ModelInfer with the
    inputs user_id, candidates, k); None: REST only."""
    consent_default: ConsentDefault = Field(default_factory=ConsentDefault)
    """The consent of a ranking request that carries none (serving.common.consent). The transformer passes
    the consent it acted on to the predictor; keep the predictor's `consent_default` the same for requests
    that reach it directly."""

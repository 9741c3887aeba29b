"""Configuration of the predictor: which model version, the exploration policy, the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kfloop.audit.config import ExplanationSamplingConfig, SpoolConfig
from kfloop.config import StrictModel
from serving.common.consent import ConsentDefault
from serving.common.names import MODEL_NAME


class PolicyConfig(StrictModel):
    """The exploration policy that turns the model's scores into a shown slate (kfloop.ope.policies)."""

    exploration: Literal["epsilon_greedy", "softmax"] = "epsilon_greedy"
    """epsilon_greedy (each slot: the best remaining item with probability 1 - epsilon, else a uniformly random
    remaining one) or softmax (Plackett-Luce over logit / temperature), as the evaluator's OPE assumes."""
    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    """Exploration rate of epsilon_greedy."""
    temperature: float = Field(default=1.0, gt=0.0)
    """Temperature of softmax, over the model's logits (the scale the evaluator uses)."""
    slate_size: int = Field(default=3, ge=1, le=100)
    """K, the number of slots filled when a request does not say (the OBD data has 3)."""
    seed: int | None = None
    """Seed of the policy's random generator (one per process); None draws it from the OS. Tests set it."""


class PredictorAuditConfig(StrictModel):
    """How the predictor records its decisions."""

    enabled: bool = True
    """Record every decision through the durable spool before answering. Off only for benchmarks of the model."""
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    """The local spool and its shipper to the audit sink. Each predictor process uses `{dir}/{model_version}`."""
    item_context_by_reference: bool = True
    """Record the candidates and their item features once, as an item context that later decisions name by
    its digest (they are the same for every request until the catalog changes: ~85% of a decision record);
    the store, `kfloop audit pull` and `audit explain` put them back. Off: every decision holds all inputs."""
    ship_linger_s: float = Field(default=0.25, ge=0, le=5)
    """After shipping a partial batch to the sink, wait this long so the next batch is fuller (each delivery
    is a POST and an fsynced commit; one per decision would cost more CPU than the decision)."""
    explanations: ExplanationSamplingConfig = Field(default_factory=ExplanationSamplingConfig)
    """Which decisions get an explanation computed in the background (by the explainer service)."""
    drain_on_stop_s: float = Field(default=5.0, ge=0)
    """On shutdown, how long to keep shipping what the spool holds (the rest ships after the next start)."""
    explainer_url: str | None = None
    """Base URL of the explainer service for sampled explanations; None: no background explanations."""
    explainer_timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of one background explanation request."""


class DriftConfig(StrictModel):
    """Input drift: each model input's population stability index (PSI) over a sliding window of the items the
    predictor showed, against the served version's training baseline (its `baseline.json`). Each shown item's
    inputs are binned into the baseline's bins as it is served; the PSI is recomputed off the request path."""

    enabled: bool = True
    """Export `kfloop_feature_drift` (a version without a baseline exports none either way)."""
    window: int = Field(default=10_000, ge=100, le=1_000_000)
    """Shown items in the sliding window (the training rows are shown items too): at 200 rankings/s and 3
    slots, 10,000 is the last ~17 s of traffic."""
    min_samples: int = Field(default=2_000, ge=1)
    """No PSI is exported for a variant until its window holds this many shown items (a small sample's PSI is
    mostly noise: about (bins - 1) / n for an unchanged input)."""
    update_interval_s: float = Field(default=2.0, gt=0, le=3600)
    """How often the PSI is recomputed from the window (in a background thread)."""
    exclude: list[str] = Field(default_factory=list)
    """Model inputs not watched. The items a ranker shows are its own choice: the item-side inputs of shown
    items (item context, user x item aggregates) move whenever a new version ranks differently from the policy
    that logged its training rows, with no change in who the users are; exclude them to watch only the
    requests' side."""

    @field_validator("min_samples")
    @classmethod
    def _fits_in_the_window(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("window")
        if window is not None and value > window:
            raise ValueError(f"must be at most window ({window}): the window never holds more")
        return value


class ImpressionLogConfig(StrictModel):
    """The served slates as impression events in the event log, for training and the joiner. They are derived
    from the decisions in the audit spool (no second write on the request path: a slate is answered only once
    its decision, and so its impressions, are on disk) and shipped to the collector by a cursor of their own,
    with retries; the spool keeps a file until both the audit sink and the collector have it. Needs
    `audit.enabled`."""

    collector_url: str | None = None
    """Base URL of the feedback collector (events go to {collector_url}/v1/events); None: no impressions."""
    token_file: Path | None = None
    """A file holding the collector's serving token (e.g. a mounted Secret), sent as `Authorization: Bearer`:
    the collector takes events with `source: "serving"` only with it. Required with collector_url. Read for each
    delivery (a rotated Secret is picked up); while it is missing, impressions wait in the spool."""
    batch_max_decisions: int = Field(default=200, ge=1, le=10_000)
    """Most decisions per POST to the collector (k impressions each; the collector takes 1,000 events a request
    by default, and a smaller batch is tried when it refuses one as too large)."""
    request_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of one POST to the collector."""

    @model_validator(mode="after")
    def _token_comes_with_the_collector(self) -> Self:
        if self.collector_url is not None and self.token_file is None:
            raise ValueError("token_file is required with collector_url (the collector's serving token)")
        return self


class PredictorConfig(StrictModel):
    """One predictor process: a model version from the registry, served through kserve.ModelServer."""

    model_name: str = MODEL_NAME
    """Name in the V1/V2 paths (/v1/models/NAME:predict); the InferenceService's name."""
    registry_uri: str = ".kfloop/registry"
    """The model registry (local path or object store URI), as the pipeline writes it."""
    model_version: str | None = None
    """Version to serve; None: the latest deployable (blessed or forced) version."""
    model_dir: Path | None = None
    """A version's folder already on local disk (on a cluster: /mnt/models, from the storage initializer); it
    holds model/ and model_card.json. Takes precedence over registry_uri/model_version."""
    cache_dir: Path = Path(".kfloop/serving/cache")
    """Where versions from a remote registry are copied to."""
    variant: str = Field(default="stable", pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}$")
    """Traffic variant reported and recorded when a request does not name one (the router's header does)."""
    max_candidates: int = Field(default=1000, ge=1, le=1000)
    """Most candidates one ranking request may carry."""
    max_instances: int = Field(default=64, ge=1)
    """Most instances (rankings) in one V1 request."""
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    """The exploration policy."""
    audit: PredictorAuditConfig = Field(default_factory=PredictorAuditConfig)
    """The decision record."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """REST port of the model server (V1, V2, /metrics)."""
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Open Inference Protocol over gRPC (KServe's GRPCInferenceService; 8081 in the cluster's
    pods); None: REST only (the local stack runs several predictors on one machine)."""
    drift: DriftConfig = Field(default_factory=DriftConfig)
    """Input drift against the version's training baseline (`kfloop_feature_drift`)."""
    impressions: ImpressionLogConfig = Field(default_factory=ImpressionLogConfig)
    """The served slates as impression events (off unless a collector is configured)."""
    consent_default: ConsentDefault = Field(default_factory=ConsentDefault)
    """The consent of a ranking request that carries none (serving.common.consent): recorded with the decision;
    without personalization, no impressions. Keep it the transformer's `consent_default` (the transformer
    passes on the consent it acted on; this one applies to requests that come straight here)."""

"""Configuration of the training pipeline: one YAML file, validated here, passed to every component as JSON.

Pure pydantic: the CLI (any environment), the runner and the components (in the pipeline image) share it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kfloop.config import StrictModel
from kfloop.features.config import FeaturesConfig


class WindowConfig(StrictModel):
    """Which events a run trains and evaluates on, and how they split."""

    mode: Literal["rolling", "since_last_run"] = "rolling"
    """rolling: the `days` before `end`; since_last_run: from the end of the last registered version's window
    (or `days` before `end` when there is none) to `end`."""
    days: float = Field(default=7.0, gt=0)
    """Length of a rolling window, in days."""
    end: str = "latest"
    """End of the window (exclusive): `latest` (just after the newest event in the log), `now`, or an RFC 3339
    time."""
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    """The most recent requests making up this fraction of the window are the eval split; the rest train.
    Split by time, never at random: no training request is later than an eval one."""
    max_requests: int | None = Field(default=None, ge=10)
    """Keep only this many most recent requests (a small profile for tests); None keeps all."""
    attribution_s: float = Field(default=1800.0, gt=0)
    """A click without a request id counts for the latest impression of that user and item this many seconds
    before it."""


class ExamplesConfig(StrictModel):
    """How ExampleGen joins features."""

    feature_join: Literal["asof", "feast"] = "asof"
    """`feast`: Feast's get_historical_features (the reference; ~5 ms per row on the file offline store);
    `asof`: the same point-in-time join on the same offline tables with pandas (pinned equal by a test)."""
    refresh_features: bool = True
    """Recompute the offline aggregate tables from the event log up to the window's end before the join
    (off when the features side's own job keeps them current)."""


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


class TransformConfig(StrictModel):
    """tf.Transform's preprocessing."""

    oov_buckets: int = Field(default=1, ge=1)
    """Out-of-vocabulary buckets of every vocabulary (values unseen in training share them)."""
    vocab_top_k: int | None = Field(default=None, ge=1)
    """Keep only this many most frequent values per vocabulary; None keeps all."""
    beam_workers: int = Field(default=1, ge=1)
    """DirectRunner workers for the analyze pass."""


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


class RegistryConfig(StrictModel):
    """Where trained versions and their cards go."""

    uri: str = ".kfloop/registry"
    """A local folder, or an object store URI (s3://bucket/models, gs://...)."""


class PipelineConfig(StrictModel):
    """The training pipeline."""

    name: str = "kfloop-training"
    """Pipeline name (in KFP and in kfp.local's output folder)."""
    base_image: str = "ghcr.io/kfloop/kfloop-pipeline:0.1.0"
    """Image every component runs in on a cluster (the project installed in the pipeline environment)."""
    pipeline_root: str = ".kfloop/pipeline-root"
    """Where KFP keeps artifacts (local folder with kfp.local; an object store URI on a cluster)."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """The event log and the Feast feature store (the same section the features side reads)."""
    examples: ExamplesConfig = Field(default_factory=ExamplesConfig)
    """How examples get their features."""
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """The model registry."""
    window: WindowConfig = Field(default_factory=WindowConfig)
    """Training window and split."""
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    """Data validation."""
    transform: TransformConfig = Field(default_factory=TransformConfig)
    """tf.Transform."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training."""
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Evaluation and blessing."""

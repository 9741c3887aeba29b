"""The controller's configuration (manifests/controller/controller.yaml), loaded once by its entry point.

Light on purpose (pydantic and the audit spool's config only): `kfloop pause | resume` read it too, for the
controller's address and token file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kfloop.audit.config import SpoolConfig
from kfloop.config import StrictModel

DEFAULT_CONFIG = Path("manifests/controller/controller.yaml")
ACTOR = "kfloop-controller"


def read_token(path: Path) -> str:
    """The token in a token file (surrounding whitespace is not part of it)."""
    return path.read_text().strip()


class ServingTargetConfig(StrictModel):
    """The serving state the controller changes: the same files and InferenceService that `kfloop deploy |
    rollback [--cluster]` change (keep them equal to the serving config's `stack` and `predictor` keys)."""

    state_dir: Path = Path(".kfloop/serving")
    """The local serving state directory (`stack.state_dir` of the serving config); `kfloop serve` follows it.
    In cluster mode it mirrors the InferenceService (on the controller's volume)."""
    manifest: Path = Path("manifests/serving/inferenceservice.yaml")
    """The InferenceService manifest the state is seeded from (its name and namespace)."""
    registry_uri: str = ".kfloop/registry"
    """The model registry (`predictor.registry_uri`): deployable versions are read here, and a retraining run
    must register its versions here too."""
    kubeconfig: str | None = None
    """Cluster mode: kubeconfig file; None: ~/.kube/config, else the pod's service account."""
    context: str | None = None
    """Cluster mode: kubeconfig context; None: its current one."""
    namespace: str | None = None
    """Cluster mode: the InferenceService's namespace; None: the manifest's."""


class KfpConfig(StrictModel):
    """Cluster mode: the training pipeline as uploaded to Kubeflow Pipelines (`kfloop pipeline submit`)."""

    host: str = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    """The KFP API endpoint."""
    pipeline_name: str = Field(default="kfloop-training", min_length=1)
    """The uploaded pipeline's name; its newest version is run."""
    experiment: str = Field(default="kfloop", min_length=1)
    """The KFP experiment runs are created in."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Run parameters; empty: the uploaded version's defaults (its compiled `config_json`)."""
    token_file: Path | None = None
    """A file holding a bearer token for the KFP API (e.g. a projected service account token); None: none."""


class RetrainConfig(StrictModel):
    """How a retraining run is started and watched, and what is done with its result."""

    command: list[str] = Field(default_factory=lambda: ["kfloop", "pipeline", "run", "--local"], min_length=1)
    """Local mode: the command that runs the training pipeline, from the controller's working directory. A
    leading `kfloop` is this Python's `python -m kfloop` (which re-executes itself in the pipeline environment)."""
    kfp: KfpConfig = Field(default_factory=KfpConfig)
    """Cluster mode: the Kubeflow Pipelines run."""
    cooldown_s: float = Field(default=3600.0, ge=0)
    """After a run ends, triggers arriving within this long start nothing (recorded as `cooldown`)."""
    timeout_s: float = Field(default=6 * 3600.0, gt=0)
    """A run still going after this long is stopped and counted as failed."""
    poll_interval_s: float = Field(default=5.0, gt=0)
    """How often a running run is checked."""
    canary_percent: int = Field(default=10, ge=1, le=100)
    """The share of traffic a blessed result gets as the canary."""


class TestConfig(StrictModel):
    """A stage's sequential non-inferiority test (kfloop.experiments), preregistered when the stage starts."""

    margin: float = Field(default=0.005, gt=0, lt=1)
    """How far below production's online CTR the candidate may be and still pass (absolute: 0.005 = half a
    CTR point)."""
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    """Error rate of each of the test's two decisions, however often it is looked at."""
    min_samples: int = Field(default=2000, ge=1)
    """Candidate impressions before any decision."""
    max_samples: int = Field(default=100_000, ge=1)
    """Candidate impressions at which an undecided stage ends as `on_max_sample` says."""
    on_max_sample: Literal["rollback", "promote"] = "rollback"
    """What an undecided stage does at `max_samples`."""


class OffPolicyGateConfig(StrictModel):
    """A shadow stage's off-policy gate (kfloop.experiments.shadow): the candidate's value on production's logged
    slots and clicks of the mirrored requests, against production's, with a paired bootstrap interval. Computed
    once per stage (no peeking): when `min_matched` matched slots are in after `duration_s`, or at the deadline."""

    margin: float = Field(default=0.02, gt=0, lt=1)
    """Non-inferiority margin on clicks per slot (absolute): the stage passes when the difference's lower bound
    (candidate - production) is above -margin, and rolls back when its upper bound is below -margin."""
    min_matched: int = Field(default=30, ge=1)
    """Logged slots the candidate could have shown as production did (its sampled item there was the same, or
    it gave it a probability) before the comparison is computed; fewer is thin evidence."""
    max_wait_s: float = Field(default=1800.0, ge=0)
    """How long, once `duration_s` and `min_mirrored` are met, the stage waits for `min_matched`; then it is
    decided on what there is."""
    min_effective_sample: float = Field(default=300.0, ge=1)
    """Kish effective sample size of the candidate's importance weights below which the evidence is thin: when
    production rarely shows what the candidate would, a few heavily weighted slots carry the estimate, and its
    bootstrap interval looks tight when it is not."""
    min_effective_clicks: float = Field(default=30.0, ge=1)
    """Likewise for the weighted clicks: (sum |w r|)^2 / sum (w r)^2 below this is thin evidence."""
    min_clicks: int = Field(default=30, ge=1)
    """Clicks on the compared slots below this is thin evidence."""
    on_inconclusive: Literal["pass", "hold", "rollback"] = "pass"
    """Thin evidence, or an interval straddling -margin: pass (default: thin evidence is no evidence of harm,
    and the canary stages' preregistered tests still guard users), hold (stay in shadow until someone acts), or
    roll back."""
    estimator: Literal["ips", "snips"] = "ips"
    """ips (unbiased) or snips (self-normalized: less variance, slightly biased)."""
    ci_level: float = Field(default=0.95, gt=0.5, lt=1)
    """The bootstrap interval's level."""
    n_boot: int = Field(default=1000, ge=100, le=100_000)
    """Bootstrap resamples (by request)."""


class StageConfig(StrictModel):
    """One stage of an experiment: the candidate's share and what it must pass to go on."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Its name in metrics, the audit trail and reports (e.g. shadow, canary-10)."""
    mode: Literal["shadow", "canary"] = "canary"
    """shadow: mirrored every request, serving none; canary: serving `percent` of the users (sticky arms)."""
    percent: int = Field(default=0, ge=0, le=99)
    """The candidate's share of users (0 in shadow)."""
    duration_s: float = Field(default=0.0, ge=0)
    """A shadow stage's gate: it passes after this long (its slates are logged, never served)..."""
    min_mirrored: int = Field(default=0, ge=0)
    """...and once the candidate has answered this many mirrored requests (read from
    `experiment.mirror_counts_url`), so a shadow still loading its model does not pass on time alone."""
    off_policy: OffPolicyGateConfig | None = None
    """A shadow stage's off-policy gate, after its duration and mirrored requests; None: those alone."""
    test: TestConfig | None = None
    """A canary stage's gate: the sequential test (required for a canary stage)."""

    @model_validator(mode="after")
    def _gate_fits_mode(self) -> StageConfig:
        if self.mode == "canary" and (self.test is None or self.percent < 1):
            raise ValueError(f"stage {self.name}: a canary stage needs a test and a percent of at least 1")
        if self.mode == "canary" and (self.min_mirrored or self.off_policy is not None):
            raise ValueError(f"stage {self.name}: min_mirrored and off_policy are a shadow stage's gates")
        if self.mode == "shadow" and (self.test is not None or self.percent != 0):
            raise ValueError(f"stage {self.name}: a shadow stage serves nobody: percent 0 and no test")
        return self


def _default_stages() -> list[StageConfig]:
    return [
        StageConfig(name="shadow", mode="shadow", duration_s=600),
        StageConfig(name="canary-10", percent=10, test=TestConfig()),
        StageConfig(name="canary-50", percent=50, test=TestConfig()),
    ]


class ExperimentConfig(StrictModel):
    """How a new blessed version is tried: its stages, in order, then 100% (a promotion)."""

    enabled: bool = True
    """A retraining run's blessed result starts an experiment; False: it is deployed as a plain canary at
    `retrain.canary_percent` (promoted by hand)."""
    stages: list[StageConfig] = Field(default_factory=_default_stages, min_length=1)
    """The stages before 100%, each passed before the next starts."""
    approval_before_full: bool = False
    """Wait for `kfloop approve EXPERIMENT` after the last stage passes, before promoting to 100%."""
    counts_url: str = "http://127.0.0.1:8092/metrics"
    """Where the per-arm impressions and clicks are read: the joiner's /metrics (its counters by model version
    and variant), the same locally and on a cluster (its Service); no Prometheus in between, so no scrape lag."""
    mirror_counts_url: str | None = None
    """Where a shadow's answered mirrored requests are counted: the local router's /metrics
    (`kfloop_ranking_requests_total{role="router",variant="shadow",code="200"}`). None: shadow stages are gated by
    their duration alone (on a cluster, where the shadow runs as a canary at 0% and nothing mirrors to it)."""
    audit_url: str | None = None
    """Where an off-policy gate reads the shadow's slates: the audit sink (its /v1/decisions). Required by a
    stage with `off_policy`."""
    event_log_uri: str | None = None
    """Where an off-policy gate reads production's served impressions and their clicks: the event log
    (`kfloop.eventlog`, a path or an object-store URI). Required by a stage with `off_policy`."""
    poll_interval_s: float = Field(default=10.0, gt=0)
    """How often a running stage's test is evaluated."""
    metrics_retention_s: float = Field(default=900.0, ge=0)
    """How long a finished experiment's last decision stays exported (so CanaryRewardWorse can fire on it)."""

    @field_validator("stages")
    @classmethod
    def _names_unique(cls, stages: list[StageConfig]) -> list[StageConfig]:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        return stages

    @model_validator(mode="after")
    def _mirrors_are_counted_somewhere(self) -> ExperimentConfig:
        gated = [s.name for s in self.stages if s.min_mirrored]
        if gated and self.mirror_counts_url is None:
            raise ValueError(f"stages {gated} count mirrored requests: mirror_counts_url is required")
        compared = [s.name for s in self.stages if s.off_policy is not None]
        if compared and (self.audit_url is None or self.event_log_uri is None):
            raise ValueError(f"stages {compared} have an off_policy gate: audit_url and event_log_uri are required")
        return self


class RollbackConfig(StrictModel):
    """Retries of a rollback the API server or the state file refused for a passing reason."""

    attempts: int = Field(default=5, ge=1, le=100)
    """Tries before the rollback is recorded as failed."""
    retry_s: float = Field(default=2.0, gt=0)
    """Wait between tries."""


class ControllerConfig(StrictModel):
    """The controller: takes Alertmanager's webhook, rolls back canaries and starts retraining runs, records
    every decision in its state and in the audit trail."""

    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 in a container)."""
    port: int = Field(default=8099, ge=1, le=65535)
    """Port of the webhook, the API, /metrics, /healthz and /readyz."""
    mode: Literal["local", "cluster"] = "local"
    """local: the serving state directory and a pipeline subprocess; cluster: also the InferenceService patch,
    and a Kubeflow Pipelines run."""
    name: str = Field(default=ACTOR, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}$")
    """Who the audit trail says acted."""
    state_dir: Path = Path(".kfloop/controller")
    """The controller's own state: `state.db` (SQLite: alerts seen, actions and their steps, pause), `runs/`
    (one folder per retraining run, with its log). A persistent volume on a cluster."""
    token_file: Path = Path(".kfloop/controller/token")
    """The bearer token callers send (Alertmanager's `credentials_file`; `kfloop pause`). Read per request."""
    create_token_file: bool = False
    """Write a random token to `token_file` at start when it is missing (local use); on a cluster the token is
    a mounted Secret and a missing one is an error."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest webhook body taken; larger is 413."""
    reconcile_interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often open actions are looked at when nothing new arrives (a new action is acted on at once)."""
    serving: ServingTargetConfig = Field(default_factory=ServingTargetConfig)
    """What a rollback or a canary deployment changes."""
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    """Retraining runs."""
    rollback: RollbackConfig = Field(default_factory=RollbackConfig)
    """Rollback retries."""
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    """The stages a new blessed version walks through before it serves everyone."""
    audit: SpoolConfig = Field(default_factory=lambda: SpoolConfig(dir=Path(".kfloop/controller/audit-spool")))
    """The durable spool of this controller's audit records and the audit sink it ships them to."""

    @field_validator("retrain")
    @classmethod
    def _command_is_not_blank(cls, value: RetrainConfig) -> RetrainConfig:
        if any(not part for part in value.command):
            raise ValueError("command: no part of the command may be empty")
        return value

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def experiments_db(self) -> Path:
        """The experiments' record (kfloop.experiments.store), read by `kfloop experiments` and reports."""
        return self.state_dir / "experiments.db"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

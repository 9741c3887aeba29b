"""One serving config file, one section per role; `kfloop serve` adds the local stack's own section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kfloop.config import StrictModel
from serving.common.process import Background
from serving.explainer.config import ExplainerConfig
from serving.local.router.config import RouterConfig
from serving.predictor.config import PredictorConfig
from serving.transformer.config import TransformerConfig

DEFAULT_CONFIG = Path("manifests/serving/serving.yaml")
DEFAULT_MANIFEST = Path("manifests/serving/inferenceservice.yaml")


class StackConfig(StrictModel):
    """`kfloop serve`: every role as a local process, wired together on loopback ports."""

    state_dir: Path = Path(".kfloop/serving")
    """The canary state (state.json), the routing table, logs and the effective config of the running stack."""
    manifest: Path = DEFAULT_MANIFEST
    """The InferenceService the state is seeded from (its model version and canaryTrafficPercent)."""
    host: str = "127.0.0.1"
    """Address the router and audit sink bind (KServe model servers bind every address)."""
    transformer_port: int = Field(default=8080, ge=0, le=65535)
    """The stack's front door (V1 and V2 ranking, :explain); 0: any free port."""
    router_port: int = Field(default=8086, ge=0, le=65535)
    """The router between the transformer and the predictors; 0: any free port."""
    explainer_port: int = Field(default=8087, ge=0, le=65535)
    """The explainer service; 0: any free port."""
    audit_sink_port: int = Field(default=8095, ge=0, le=65535)
    """The audit sink; 0: any free port."""
    predictor_replicas: int = Field(default=2, ge=1, le=8)
    """Predictor processes per served version (the pods of a revision; the manifest's minReplicas on a
    cluster). One process answers one request at a time between its event loop and the GIL, so on a 2-core
    machine a second one keeps a burst from queueing behind a single busy process; the router sends each
    request to the replica with the fewest in flight. Each replica has its own audit spool."""
    run_audit_sink: bool = True
    """Start an audit sink; False: predictors ship to predictor.audit.spool.sink_url."""
    audit_store_url: str = "sqlite:///.kfloop/audit/audit.db"
    """The sink's store (same as `kfloop audit` reads)."""
    run_explainer: bool = True
    """Start the explainer service (:explain and background explanations)."""
    background_idle: bool = True
    """Run the explainer and the audit sink under Linux SCHED_IDLE once they are ready: their work is off the
    ranking path (a decision is durable in its predictor's spool before it is answered), so they take only CPU
    time rankings leave. The sink's work comes in bursts (10-20 ms of CPU per shipped batch) which, merely
    niced, can still take a core from rankings (alternated runs at 200/s on 2 cores: p99 33-40 ms niced and 14-19
    ms idle while the host was busy; 17-21 ms either way while it was quieter). Under a load that leaves no CPU
    at all, the sink falls behind (the spools keep the records and ship them when the load drops) and sampled
    explanations wait, or are dropped when their queue is full. Off: both are niced by `background_nice`."""
    background_nice: int = Field(default=10, ge=0, le=19)
    """Nice value of the explainer and the audit sink when `background_idle` is off."""
    start_timeout_s: float = Field(default=180.0, gt=0)
    """How long a process may take to become ready (a predictor imports TensorFlow: 20-30 s)."""
    poll_interval_s: float = Field(default=0.5, gt=0)
    """How often the state file and the processes are checked."""
    restart_backoff_s: float = Field(default=2.0, ge=0)
    """Wait before restarting a process that died (doubling per consecutive failure, up to a minute)."""

    def background(self) -> Background:
        """The priority of the processes whose work is off the ranking path (the explainer, the audit sink)."""
        return Background(nice=self.background_nice, idle=self.background_idle)


class ServingConfig(StrictModel):
    """Every serving role's configuration (manifests/serving/serving.yaml)."""

    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    """The predictor (one process per served version)."""
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)
    """The transformer."""
    explainer: ExplainerConfig = Field(default_factory=ExplainerConfig)
    """The explainer."""
    router: RouterConfig = Field(default_factory=RouterConfig)
    """The local router (Knative's split, on a cluster)."""
    stack: StackConfig = Field(default_factory=StackConfig)
    """The local stack of `kfloop serve`."""

"""The demo's settings: one typed config, the defaults for `make demo` and a `--fast` preset for tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kfloop.config import StrictModel


class DemoConfig(StrictModel):
    """`kfloop demo`: sizes and time limits of each phase (no phase waits for a person: each has a limit)."""

    state_dir: Path = Path(".kfloop/demo")
    """The demo system's own state (event log, feature store, registry, serving, controller); emptied at start."""
    report_dir: Path = Path("demo-report")
    """Where index.html, the PNG plots, report.json and the recorded run (`run/`) are written."""
    data_dir: Path = Path("data")
    """Where `kfloop data fetch` keeps the OBD sample."""
    rate: float = Field(default=20.0, gt=0, le=500)
    """Simulated rankings per second."""
    users: int = Field(default=300, ge=1)
    """Simulated users (drawn from the OBD cohorts)."""
    seed: int = Field(default=7, ge=0)
    """The simulator's seed (users, requests, clicks, the shift)."""
    shift_share: float = Field(default=0.8, gt=0, le=1)
    """Share of the users whose preferences change at the shift."""
    steady_s: float = Field(default=100.0, gt=0)
    """Traffic before the shift (it also fills the joiner's reference window of the stable version)."""
    detect_timeout_s: float = Field(default=180.0, gt=0)
    """Longest wait, after the shift, for the loop to start a retraining run."""
    retrain_timeout_s: float = Field(default=1800.0, gt=0)
    """Longest wait for the retraining run's blessed candidate to enter its experiment (the pipeline alone takes
    10-15 minutes on a busy 2-core host)."""
    shadow_s: float = Field(default=20.0, ge=0)
    """The candidate's shadow stage (mirrored every request, serving none): its length..."""
    shadow_min_mirrored: int = Field(default=100, ge=0)
    """...and the mirrored requests it must have answered (a shadow still loading its model does not pass)."""
    canary_percents: list[int] = Field(default_factory=lambda: [25, 50], min_length=1)
    """The canary stages after the shadow, each a share of the users gated by the sequential test, then 100%."""
    test_margin: float = Field(default=0.01, gt=0, lt=1)
    """Each canary stage's non-inferiority margin (absolute CTR). The demo's few impressions a second would need
    tens of thousands of impressions per stage at the default half point; a point decides in a few minutes."""
    test_min_samples: int = Field(default=600, ge=1)
    """Candidate impressions before a canary stage's test may decide."""
    test_max_samples: int = Field(default=30000, ge=1)
    """Candidate impressions at which an undecided canary stage is rolled back (as preregistered)."""
    promote_timeout_s: float = Field(default=900.0, gt=0)
    """Longest wait for the controller to walk the candidate's stages and promote it (or roll it back)."""
    recover_s: float = Field(default=60.0, ge=0)
    """Traffic after the promotion, to measure the recovered CTR."""
    bad_canary_percent: int = Field(default=50, ge=1, le=100)
    """The share of traffic the deliberately bad version gets."""
    rollback_timeout_s: float = Field(default=120.0, gt=0)
    """Longest wait for the controller to roll the bad version back."""
    reference_impressions: int = Field(default=3000, ge=1)
    """The joiner's reference window (what OnlineRewardDecay compares the stable version's CTR with): ~90 clicks,
    a 10% standard error (1,500 made it 15%: a reference measured high by chance delayed the alert a minute)."""
    reference_settle_s: float = Field(default=20.0, ge=0)
    """How long the joiner waits for the reference window's clicks."""
    retrain_cooldown_s: float = Field(default=60.0, ge=0)
    """The controller's cooldown between retraining runs."""
    pipeline_max_requests: int = Field(default=1500, ge=100)
    """The training window (the newest rankings) of each pipeline run: about what the traffic brings between the
    shift and the retraining run's start, so the candidate learns the new preferences, not a mix."""
    canary_max_p99_seconds: float = Field(default=2.0, gt=0)
    """CanaryLatencyHigh's threshold in the demo's rules (the local profile's is 0.25 s): on one 2-core machine the
    canary shares the cores with a dozen processes and a training run, and its p99 reaches 1 s there with
    nothing wrong; the bad version is rolled back on its errors."""
    bin_s: float = Field(default=15.0, gt=0)
    """Width of the report's time bins (CTR, traffic split)."""
    start_timeout_s: float = Field(default=900.0, gt=0)
    """`kfloop up`'s limit for each part to become ready (TensorFlow starts slowly on a busy host)."""


FAST = {
    "rate": 15.0,
    "users": 60,
    "steady_s": 60.0,
    "detect_timeout_s": 120.0,
    "shadow_s": 10.0,
    "shadow_min_mirrored": 50,
    "canary_percents": [50],
    "recover_s": 30.0,
    "rollback_timeout_s": 120.0,
    "reference_impressions": 1800,
    "reference_settle_s": 5.0,
    "retrain_cooldown_s": 30.0,
    "pipeline_max_requests": 1000,
    "bin_s": 10.0,
}
"""`--fast`: small sizes and short windows, for tests (the loop's effect is smaller and noisier)."""

"""Configuration of the joiner, loaded once by its entry point."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from kfloop.config import StrictModel
from kfloop.eventlog import EventLogConfig


class JoinerConfig(StrictModel):
    """The joiner: tails the event log, joins feedback to served impressions by request id, and serves
    the counts per model version and variant on /metrics."""

    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 in a container)."""
    port: int = Field(default=8092, ge=1, le=65535)
    """Port of /metrics, /healthz and /readyz."""
    event_log: EventLogConfig = Field(default_factory=EventLogConfig)
    """Where the event log is: every writer's write-ahead segments (`wal_dir`, read only) and the sealed
    Parquet files (`log_uri`). The other keys are the writers' and are not used here."""
    window_s: float = Field(default=1800.0, gt=0)
    """Attribution window: feedback counts for its request when its `ts` is at most this long after the
    decision (the request's earliest impression); later, it is late (counted, dropped). Feedback naming a request
    whose impressions have not arrived waits this long after its arrival for them, then is unattributed.
    The same default as the training pipeline's `window.attribution_s`."""
    remember_s: float = Field(default=7200.0, gt=0)
    """How long a request (and every event id, for duplicates) is remembered after it arrived: feedback up to
    this long after its decision is told late rather than unattributed. On start, the joiner replays this much of
    the log (by arrival) to rebuild its state, so its counters then hold the counts of that span. Memory grows
    with it: a few hundred bytes per impression. At least `window_s`."""
    poll_interval_s: float = Field(default=0.2, gt=0, le=60)
    """How often the write-ahead segments are checked for new lines when idle."""
    sealed_scan_interval_s: float = Field(default=1.0, ge=0)
    """How often recent sealed Parquet files are listed, to catch a segment sealed before it was seen."""
    reference_impressions: int = Field(default=2000, ge=1)
    """A version's reference window: its first this many impressions served as stable (after its promotion).
    Its reference CTR (the clicks joined to them / this many), `kfloop_joiner_reference_ctr`, is what the
    OnlineRewardDecay alert compares its later online CTR with. The reference's relative standard error is
    sqrt((1 - p) / (p N)): at a 5% CTR, 2,000 measure it to about 10%; at the OBD sample's 0.4%, to about 35%
    (25,000 would be needed for 10%). A restarted joiner rebuilds the window from the `remember_s` it replays:
    for a version promoted longer ago than that, the rebuilt reference is its CTR at the start of that span."""
    reference_settle_s: float = Field(default=60.0, ge=0)
    """Once a reference window is full, how long its impressions' clicks are still awaited (after the arrival of
    its last impression) before the reference is fixed and exported. At most `window_s`."""

    @field_validator("reference_settle_s")
    @classmethod
    def _settles_within_the_window(cls, value: float, info: ValidationInfo) -> float:
        window = info.data.get("window_s")
        if window is not None and value > window:
            raise ValueError(f"must be at most window_s ({window}): later clicks are not attributed anyway")
        return value

    @field_validator("remember_s")
    @classmethod
    def _remember_covers_the_window(cls, value: float, info: ValidationInfo) -> float:
        window = info.data.get("window_s")
        if window is not None and value < window:
            raise ValueError(f"must be at least window_s ({window}): a request must outlive its window")
        return value

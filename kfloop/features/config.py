"""Configuration of the features side: the Feast store, the windowed aggregates, the feature updater."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kfloop.config import StrictModel
from kfloop.eventlog import EventLogConfig
from kfloop.features import names


class WindowConfig(StrictModel):
    """One sliding window over event time."""

    label: str = Field(pattern=r"^[0-9]+[smhdw]$")
    """Suffix of the feature names of this window, e.g. 1h."""
    seconds: int = Field(gt=0)
    """Length of the window in seconds; a whole number of buckets."""


def _default_windows() -> list[WindowConfig]:
    return [WindowConfig(label=label, seconds=seconds) for label, seconds in names.DEFAULT_WINDOWS]


class AggregationConfig(StrictModel):
    """How feedback events become windowed aggregates (the same online and offline)."""

    windows: list[WindowConfig] = Field(default_factory=_default_windows, min_length=1)
    """Sliding windows. Changing them changes the feature names: retrain the model with the same config."""
    explicit_window: str = names.DEFAULT_EXPLICIT_WINDOW
    """Label of the window the explicit-feedback aggregates (ratings, thumbs) are taken over."""
    bucket_s: int = Field(default=60, gt=0)
    """Width of a time bucket. An event counts in a window of length W for between W - bucket_s and W
    after it happened (it leaves with its bucket)."""
    ctr_prior_clicks: float = Field(default=1.0, gt=0)
    """Smoothed CTR = (clicks + a) / (impressions + a + b): this is a (prior clicks)."""
    ctr_prior_non_clicks: float = Field(default=49.0, gt=0)
    """This is b (prior non-clicks). With a = 1, b = 49: a 2% prior CTR worth 50 impressions."""
    rating_prior_mean: float = Field(default=3.0, ge=1, le=5)
    """Mean ratings are smoothed towards this value ..."""
    rating_prior_weight: float = Field(default=2.0, ge=0)
    """... with the weight of this many ratings."""

    @model_validator(mode="after")
    def _check(self) -> AggregationConfig:
        labels = [w.label for w in self.windows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"window labels must be unique, got {labels}")
        if self.explicit_window not in labels:
            raise ValueError(f"explicit_window {self.explicit_window!r} is not one of {labels}")
        for window in self.windows:
            if window.seconds % self.bucket_s:
                raise ValueError(f"window {window.label} is not a whole number of {self.bucket_s} s buckets")
        return self

    def feature_set(self) -> names.FeatureSet:
        return names.FeatureSet(tuple((w.label, w.seconds) for w in self.windows), self.explicit_window)

    @property
    def ctr_prior_mean(self) -> float:
        return self.ctr_prior_clicks / (self.ctr_prior_clicks + self.ctr_prior_non_clicks)


class StoreConfig(StrictModel):
    """The Feast feature store: registry, offline files and online store."""

    project: str = Field(default=names.PROJECT, pattern=r"^[a-z][a-z0-9_]*$")
    """Feast project name."""
    repo_dir: Path = Path(".kfloop/features")
    """Where the file registry, the offline Parquet tables and the SQLite online store live."""
    online_store: Literal["sqlite", "redis"] = "sqlite"
    """sqlite (embedded default) or redis (clusters)."""
    sqlite_path: Path | None = None
    """SQLite online store file; default `{repo_dir}/online.db`."""
    redis: str = "127.0.0.1:6379"
    """Redis connection string as Feast takes it: host:port[,db=0,password=...,ssl=true]."""
    obd_data_dir: Path = Path("data")
    """Where `kfloop data fetch` put the Open Bandit Dataset (user and item context come from it)."""
    obd_log: Literal["random", "bts"] = "random"
    """Which OBD log's item_context.csv gives the item features (their hashes differ between logs)."""

    @property
    def offline_dir(self) -> Path:
        return self.repo_dir / "offline"

    @property
    def registry_path(self) -> Path:
        return self.repo_dir / "registry.db"

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path if self.sqlite_path is not None else self.repo_dir / "online.db"


class FollowerConfig(StrictModel):
    """The feature updater process (`kfloop features follow`)."""

    poll_interval_s: float = Field(default=0.005, gt=0, le=1)
    """How often the write-ahead segments are checked for new lines when idle."""
    sealed_scan_interval_s: float = Field(default=1.0, ge=0)
    """How often recent sealed Parquet files are listed, to catch a segment sealed before it was seen."""
    restart_lookback_s: int = Field(default=86_400, ge=0)
    """On start, events this much older than the longest window are replayed too, so users whose windows
    emptied while the updater was down are written back to zero. Longer downtime: run materialize."""
    startup_write_batch: int = Field(default=2_000, ge=1)
    """After a restart, the rebuilt keys are written this many per poll, between polls for new events."""
    partition_index: int = Field(default=0, ge=0)
    """This process handles users with crc32(user_id) % partition_count == partition_index."""
    partition_count: int = Field(default=1, ge=1)
    """Number of feature updater processes (one Deployment each), each for its share of users."""

    @model_validator(mode="after")
    def _check(self) -> FollowerConfig:
        if self.partition_index >= self.partition_count:
            raise ValueError("partition_index must be below partition_count")
        return self


class FeaturesConfig(StrictModel):
    """Everything `kfloop features ...` and the feature updater Deployment need."""

    event_log: EventLogConfig = Field(default_factory=EventLogConfig)
    """The event log the aggregates are computed from (same section as the collector's)."""
    store: StoreConfig = Field(default_factory=StoreConfig)
    """The Feast feature store."""
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    """Windows, buckets and priors of the aggregates."""
    follower: FollowerConfig = Field(default_factory=FollowerConfig)
    """The feature updater."""

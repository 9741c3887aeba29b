"""The training pipeline's small profile on given paths, and the OBD sample as an event log: for the tests that
run the whole pipeline (pipeline environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kfloop.config import load_config
from kfloop.data import fetch_obd, import_obd
from kfloop.eventlog import EventLog, EventLogConfig
from pipelines.config import PipelineConfig

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "data"
SMALL_PROFILE = REPO / "pipelines" / "profiles" / "small.yaml"


def small_config(
    *, events: Path, wal: Path, feast: Path, registry: Path, pipeline_root: Path, **overrides: Any
) -> PipelineConfig:
    """The small profile reading the event log at `events` (its write-ahead segments in `wal`)."""
    return load_config(
        PipelineConfig,
        SMALL_PROFILE,
        overrides={
            "features.event_log.log_uri": str(events),
            "features.event_log.wal_dir": str(wal),
            "features.store.repo_dir": str(feast),
            "features.store.obd_data_dir": str(DATA_DIR),
            "registry.uri": str(registry),
            "pipeline_root": str(pipeline_root),
            **overrides,
        },
    )


def import_obd_sample(events: Path, wal: Path) -> None:
    """The OBD sample's events appended to the event log at `events` (fetched first when missing)."""
    fetch_obd(DATA_DIR)
    with EventLog(EventLogConfig(wal_dir=wal, log_uri=str(events)), writer_id="obd") as log:
        import_obd(DATA_DIR, log, progress=lambda _: None)


def state_dir_config(state: Path, pipeline_root: Path, **overrides: Any) -> PipelineConfig:
    """The small profile on a `kfloop up` state directory: its event log, feature store and registry."""
    paths = {"events": state / "events", "wal": state / "wal", "feast": state / "features"}
    return small_config(**paths, registry=state / "registry", pipeline_root=pipeline_root, **overrides)

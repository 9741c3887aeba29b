"""`kfloop data fetch` and `kfloop events import-obd` handlers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import Field

from kfloop.config import StrictModel, load_config, load_section
from kfloop.eventlog import EventLogConfig


class LogClientConfig(StrictModel):
    """A command-line tool that reads or writes the event log."""

    event_log: EventLogConfig = Field(default_factory=EventLogConfig)
    """The event log (same section as the collector's config)."""
    writer_id: str = "obd-import"
    """Writer id of this tool's own write-ahead segments and Parquet files."""


def log_config_from(path: str | None) -> EventLogConfig:
    """The `event_log` section of any kfloop config file (the collector's, the importer's, ...)."""
    return load_section(EventLogConfig, path, "event_log")


def fetch(args: argparse.Namespace) -> int:
    from kfloop.data.obd import fetch_obd

    fetch_obd(Path(args.data_dir))
    return 0


def import_obd(args: argparse.Namespace) -> int:
    from kfloop.data.import_obd import import_obd as run_import
    from kfloop.eventlog import EventLog

    config = load_config(LogClientConfig, args.config)
    with EventLog(config.event_log, writer_id=config.writer_id) as log:
        summary = run_import(Path(args.data_dir), log)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0

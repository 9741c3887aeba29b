"""The joiner's command-line flags: shared by `kfloop joiner` and `python -m serving.joiner`. Imports nothing
heavy (the CLI builds its parser from it before choosing an environment)."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML config file (e.g. manifests/joiner/joiner.yaml; defaults apply where omitted)"
    )
    parser.add_argument("--host", help="bind address (overrides the config)")
    parser.add_argument("--port", type=int, help="port of /metrics, /healthz, /readyz (overrides the config)")
    parser.add_argument("--wal-dir", help="the writers' write-ahead directory (overrides event_log.wal_dir)")
    parser.add_argument("--log-uri", help="where sealed Parquet is, path or URI (overrides event_log.log_uri)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys the flags set (None: not given, the file's value stands)."""
    return {
        "host": args.host,
        "port": args.port,
        "event_log.wal_dir": args.wal_dir,
        "event_log.log_uri": args.log_uri,
    }

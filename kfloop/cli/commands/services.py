"""Handlers that run long-lived services (each in the serving environment)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def collector_config(args: argparse.Namespace) -> Any:
    """The collector's config: its file, then the command line's overrides (validated together)."""
    from kfloop.config import load_config
    from serving.collector.config import CollectorConfig

    secrets = Path(args.segment_secrets_dir) if args.segment_secrets_dir else None
    overrides = {
        "host": args.host,
        "port": args.port,
        "writer_id": args.writer_id,
        "event_log.wal_dir": args.wal_dir,
        "event_log.log_uri": args.log_uri,
        "segment.write_keys_file": str(secrets / "write-keys") if secrets else None,
        "segment.pseudonymization_key_file": str(secrets / "pseudonymization-key") if secrets else None,
    }
    return load_config(CollectorConfig, args.config, overrides)


def collector(args: argparse.Namespace) -> int:
    from serving.collector.app import run

    return run(collector_config(args))

"""Handlers that run long-lived services (each in the serving environment)."""

from __future__ import annotations

import argparse


def collector(args: argparse.Namespace) -> int:
    from kfloop.config import load_config
    from serving.collector.app import run
    from serving.collector.config import CollectorConfig

    overrides = {
        "host": args.host,
        "port": args.port,
        "writer_id": args.writer_id,
        "event_log.wal_dir": args.wal_dir,
        "event_log.log_uri": args.log_uri,
    }
    return run(load_config(CollectorConfig, args.config, overrides))

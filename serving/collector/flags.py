"""`kfloop collector` and `python -m serving.collector`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

HELP = "run the feedback collector (HTTP, Segment-compatible)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the collector's YAML (defaults apply where omitted)")
    parser.add_argument("--host", help="bind address (overrides the config)")
    parser.add_argument("--port", type=int, help="port (overrides the config)")
    parser.add_argument("--writer-id", help="this replica's writer id in the log (default: hostname)")
    parser.add_argument("--wal-dir", help="local directory of write-ahead segments (overrides event_log.wal_dir)")
    parser.add_argument("--log-uri", help="where sealed Parquet goes, path or URI (overrides event_log.log_uri)")
    parser.add_argument(
        "--segment-secrets-dir",
        help="a mounted Secret with files `write-keys` and `pseudonymization-key` (replace the config's keys)",
    )
    parser.add_argument(
        "--serving-token-file",
        help="a file holding the serving token (e.g. a mounted Secret) that serving-origin events need "
        "(overrides serving_token_file)",
    )

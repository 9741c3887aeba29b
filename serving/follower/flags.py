"""`kfloop features follow` and `python -m serving.follower`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

HELP = "keep online aggregates fresh from the event log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the features YAML (defaults apply where omitted)")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    parser.add_argument("--partition-index", type=int, help="this follower's share of users (a StatefulSet pod index)")
    parser.add_argument("--partition-count", type=int, help="how many followers split the users")
    parser.add_argument("--log-uri", help="where sealed Parquet is, path or URI (overrides event_log.log_uri)")

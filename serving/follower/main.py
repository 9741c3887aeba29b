"""`kfloop features follow` (`python -m serving.follower`): the feature follower until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading

from serving.common.flags import parser_for
from serving.follower import flags


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop features follow` (and `python -m serving.follower`): the same flags, parsed."""
    from kfloop.config import load_config
    from kfloop.features.config import FeaturesConfig
    from kfloop.features.store import open_store
    from serving.follower.follower import FeatureFollower

    overrides = {
        "follower.partition_index": args.partition_index,
        "follower.partition_count": args.partition_count,
        "event_log.log_uri": args.log_uri,
    }
    config = load_config(FeaturesConfig, args.config, overrides)
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    follower = FeatureFollower(config, open_store(config.store))
    try:
        follower.run(stop)
    finally:
        follower.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.follower`."""
    return run_from_args(parser_for("serving.follower", flags.HELP, flags.add_arguments).parse_args(argv))

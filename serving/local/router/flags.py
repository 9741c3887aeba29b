"""`kfloop router` and `python -m serving.local.router`: the one declaration of their flags (argparse only)."""

from __future__ import annotations

import argparse

HELP = "run the local canary router (the stable/canary split Knative does on a cluster; `kfloop serve` starts it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the serving YAML (its `router` section)")
    parser.add_argument("--routes-file", help="routing table (overrides router.routes_file)")
    parser.add_argument("--seed", type=int, help="seed of the split (overrides router.seed)")
    parser.add_argument("--host", help="bind address (overrides router.host)")
    parser.add_argument("--port", type=int, help="port (overrides router.port)")

"""`kfloop controller` and `python -m monitoring.controller`: the one declaration of their flags (argparse only:
the `kfloop` parser imports it before choosing an environment)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "run the controller: acts on Alertmanager's alerts (rollback, retrain), records every decision"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the controller's YAML (default: manifests/controller/controller.yaml)")
    parser.add_argument("--host", help="bind address (overrides the config)")
    parser.add_argument("--port", type=int, help="port (overrides the config)")
    parser.add_argument("--mode", choices=["local", "cluster"], help="overrides the config's mode")
    parser.add_argument("--state-dir", help="the controller's state directory (overrides state_dir)")
    parser.add_argument(
        "--namespace", help="the InferenceService's namespace (overrides serving.namespace; in a pod: its own)"
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys the flags set (None: not given, the file's value stands)."""
    return {
        "host": args.host,
        "port": args.port,
        "mode": args.mode,
        "state_dir": args.state_dir,
        "serving.namespace": args.namespace,
    }


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`kfloop pause | resume`: which controller, who, why."""
    parser.add_argument("--config", help="the controller's YAML, for its address and token file")
    parser.add_argument("--url", help="the controller's base URL (default: from the config's host and port)")
    parser.add_argument("--operator", help="who (default: the OS user)")
    parser.add_argument("--reason", default="", help="why (recorded in the audit trail)")


def add_approve_arguments(parser: argparse.ArgumentParser) -> None:
    """`kfloop approve EXPERIMENT`: the experiment, and the client's arguments."""
    parser.add_argument(
        "experiment", help="the experiment's id (exp-...), as the audit trail and /v1/experiments name it"
    )
    add_client_arguments(parser)

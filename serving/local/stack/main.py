"""`kfloop serve` (`python -m serving.local.stack`): the local serving stack until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping

from kfloop.audit.config import store_url_given
from kfloop.config import load_config
from kfloop.errors import KfloopError
from serving.common.flags import parser_for
from serving.local.stack import flags


def overrides(args: argparse.Namespace, environ: Mapping[str, str]) -> dict:
    """The command line's and the environment's settings over the config file's ($KFLOOP_AUDIT_STORE_URL: the
    store the stack's audit sink writes, as `kfloop audit` reads it)."""
    return {
        "stack.audit_store_url": store_url_given(None, environ),
        "stack.state_dir": args.state_dir,
        "stack.host": args.host,
        "stack.transformer_port": args.port,
        "stack.predictor_replicas": getattr(args, "predictor_replicas", None),
        "predictor.registry_uri": args.registry_uri,
        "explainer.registry_uri": args.registry_uri,
    }


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop serve` (and `python -m serving.local.stack`): the same flags, parsed."""
    from serving.local.stack.config import DEFAULT_CONFIG, ServingConfig
    from serving.local.stack.supervisor import Stack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        config = load_config(ServingConfig, path, overrides(args, os.environ))
    except KfloopError as exc:
        print(f"kfloop serve: {exc.message}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(config)
    try:
        stack.start()
        print(
            f"kfloop serve: ranking at {stack.url('transformer')}/v1/models/{config.predictor.model_name}:predict "
            f"(V2: /v2/models/{config.predictor.model_name}/infer); state in {stack.state_dir}",
            flush=True,
        )
        stack.run(stop)
    except KfloopError as exc:
        print(f"kfloop serve: {exc.message}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.local.stack`."""
    return run_from_args(parser_for("serving.local.stack", flags.HELP, flags.add_arguments).parse_args(argv))

"""`kfloop predictor` (`python -m serving.predictor`): one model version behind kserve.ModelServer.

KServe's own flags (--http_port, --workers, ...) are declared with ours (serving/common/flags.py) and handed on.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from serving.common.entry import run_role
from serving.common.flags import parser_for
from serving.predictor import flags


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.predictor`."""
    return run_from_args(parser_for("serving.predictor", flags.HELP, flags.add_arguments).parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop predictor` (and `python -m serving.predictor`): the same flags, parsed."""
    from serving.predictor.config import PredictorConfig

    return run_role("predictor", args, PredictorConfig, "predictor", _overrides, _prepare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model_version": args.model_version,
        "model_dir": args.model_dir,
        "registry_uri": args.registry_uri,
        "variant": args.variant,
        "policy.seed": args.seed,
        "audit.spool.dir": args.spool_dir,
        "http_port": args.port or args.http_port,
        "grpc_port": args.grpc_port,
    }


def _prepare(config: Any, args: argparse.Namespace) -> Callable[[], None]:
    """The version resolved (an unknown one is refused, naming the deployable ones) before serving."""
    from serving.common.versions import resolve
    from serving.predictor.server import serve

    predictor = config
    resolved = resolve(predictor.registry_uri, predictor.model_version, predictor.model_dir, predictor.cache_dir)
    return lambda: serve(predictor, resolved)

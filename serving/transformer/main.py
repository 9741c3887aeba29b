"""`kfloop transformer` (`python -m serving.transformer`): feature lookup in front of the predictor, behind
kserve.ModelServer.

On a cluster the InferenceService controller passes --model_name, --predictor_host and --http_port; they are
honoured (the predictor host becomes http://HOST).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from kfloop.errors import ConfigError
from serving.common.entry import run_role
from serving.common.flags import parser_for
from serving.transformer import flags


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.transformer`."""
    return run_from_args(parser_for("serving.transformer", flags.HELP, flags.add_arguments).parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop transformer` (and `python -m serving.transformer`): the same flags, parsed."""
    from serving.transformer.config import TransformerConfig

    return run_role("transformer", args, TransformerConfig, "transformer", _overrides, _prepare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "predictor_url": args.predictor_url,
        "explainer_url": args.explainer_url,
        "http_port": args.port or args.http_port,
        "grpc_port": args.grpc_port,
        "model_name": args.model_name,
    }


def _prepare(config: Any, args: argparse.Namespace) -> Callable[[], None]:
    """The predictor's URL: the config's, else the host KServe's controller passes (http://HOST)."""
    from serving.transformer.server import serve

    transformer = config
    predictor_url = transformer.predictor_url or (f"http://{args.predictor_host}" if args.predictor_host else None)
    if predictor_url is None:
        raise ConfigError("no predictor: set transformer.predictor_url or pass --predictor-url")
    return lambda: serve(transformer, predictor_url)

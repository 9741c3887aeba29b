"""`kfloop explainer` (`python -m serving.explainer`): the explainer service behind kserve.ModelServer."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from serving.common.entry import run_role
from serving.common.flags import parser_for
from serving.explainer import flags


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.explainer`."""
    return run_from_args(parser_for("serving.explainer", flags.HELP, flags.add_arguments).parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """`kfloop explainer` (and `python -m serving.explainer`): the same flags, parsed."""
    from serving.explainer.config import ExplainerConfig

    return run_role("explainer", args, ExplainerConfig, "explainer", _overrides, _prepare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "registry_uri": args.registry_uri,
        "model_version": args.model_version,
        "http_port": args.port or args.http_port,
    }


def _prepare(config: Any, args: argparse.Namespace) -> Callable[[], None]:
    from serving.explainer.server import serve

    return lambda: serve(config)

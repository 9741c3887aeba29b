"""`python -m serving.transformer`: feature lookup in front of the predictor, behind kserve.ModelServer.

On a cluster the InferenceService controller passes --model_name, --predictor_host and --http_port; they are
honoured (the predictor host becomes http://HOST).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from kfloop.errors import ConfigError
from serving.common.entry import run_role


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.transformer", description="Run the transformer.")
    p.add_argument("--config-file", help="the serving YAML (its `transformer` section)")
    p.add_argument("--predictor-url", help="base URL of the predictor (overrides transformer.predictor_url)")
    p.add_argument("--explainer-url", help="base URL of the explainer (overrides transformer.explainer_url)")
    p.add_argument("--host", help="ignored: KServe's model server binds every address")
    p.add_argument("--port", type=int, help="REST port (overrides transformer.http_port)")
    # What KServe's controller passes a transformer container:
    p.add_argument("--predictor_host", help=argparse.SUPPRESS)
    p.add_argument("--http_port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model_name", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from serving.transformer.config import TransformerConfig

    return run_role("transformer", parser(), argv, TransformerConfig, "transformer", _overrides, _prepare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "predictor_url": args.predictor_url,
        "explainer_url": args.explainer_url,
        "http_port": args.port or args.http_port,
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

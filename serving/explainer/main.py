"""`python -m serving.explainer`: the explainer service behind kserve.ModelServer."""

from __future__ import annotations

import argparse
import logging
import sys

from kfloop.config import load_config
from kfloop.errors import KfloopError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.explainer", description="Run the explainer service.")
    p.add_argument("--config-file", help="the serving YAML (its `explainer` section)")
    p.add_argument("--registry-uri", help="the model registry (overrides explainer.registry_uri)")
    p.add_argument("--model-version", help="version for requests that name none (default: latest deployable)")
    p.add_argument("--host", help="ignored: KServe's model server binds every address")
    p.add_argument("--port", type=int, help="REST port (overrides explainer.http_port)")
    p.add_argument("--http_port", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from serving.explainer.server import serve
    from serving.stack.config import ServingConfig

    args, _ = parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        "explainer.registry_uri": args.registry_uri,
        "explainer.model_version": args.model_version,
        "explainer.http_port": args.port or args.http_port,
    }
    try:
        config = load_config(ServingConfig, args.config_file, overrides).explainer
    except KfloopError as exc:
        print(f"explainer: {exc.message}", file=sys.stderr)
        return 2
    serve(config)
    return 0

"""`python -m serving.explainer`: the explainer service behind kserve.ModelServer."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from serving.common.entry import run_role


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
    from serving.explainer.config import ExplainerConfig

    return run_role("explainer", parser(), argv, ExplainerConfig, "explainer", _overrides, _prepare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "registry_uri": args.registry_uri,
        "model_version": args.model_version,
        "http_port": args.port or args.http_port,
    }


def _prepare(config: Any, args: argparse.Namespace) -> Callable[[], None]:
    from serving.explainer.server import serve

    return lambda: serve(config)

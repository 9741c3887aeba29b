"""`python -m serving.predictor`: one model version behind kserve.ModelServer.

Arguments KServe itself passes (--http_port, --model_name, ...) are left to KServe's own parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from serving.common.entry import run_role


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.predictor", description="Serve one ranker version.")
    p.add_argument("--config-file", help="the serving YAML (its `predictor` section)")
    p.add_argument("--model-version", help="version to serve (default: the latest deployable)")
    p.add_argument("--model-dir", help="a registry version folder on disk (the storage initializer's /mnt/models)")
    p.add_argument("--registry-uri", help="the model registry (overrides predictor.registry_uri)")
    p.add_argument("--variant", help="variant reported when the router names none (default: stable)")
    p.add_argument("--seed", type=int, help="seed of the exploration policy (tests)")
    p.add_argument("--spool-dir", help="root of the audit spool (the process uses {root}/{version})")
    p.add_argument("--host", help="ignored: KServe's model server binds every address")
    p.add_argument("--port", type=int, help="REST port (overrides predictor.http_port)")
    return p


def main(argv: list[str] | None = None) -> int:
    from serving.predictor.config import PredictorConfig

    return run_role("predictor", parser(), argv, PredictorConfig, "predictor", _overrides, _prepare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model_version": args.model_version,
        "model_dir": args.model_dir,
        "registry_uri": args.registry_uri,
        "variant": args.variant,
        "policy.seed": args.seed,
        "audit.spool.dir": args.spool_dir,
        "http_port": args.port,
    }


def _prepare(config: Any, args: argparse.Namespace) -> Callable[[], None]:
    """The version resolved (an unknown one is refused, naming the deployable ones) before serving."""
    from serving.common.versions import resolve
    from serving.predictor.server import serve

    predictor = config
    resolved = resolve(predictor.registry_uri, predictor.model_version, predictor.model_dir, predictor.cache_dir)
    return lambda: serve(predictor, resolved)

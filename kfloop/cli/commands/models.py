"""`kfloop models list | show VERSION | force VERSION`: the model registry, read from any environment.

Arguments (wired in kfloop/cli/app.py):
    list:  --config FILE, --registry URI, --json
    show:  VERSION, --config FILE, --registry URI
    force: VERSION, --operator NAME, --reason TEXT, --config FILE, --registry URI
"""

from __future__ import annotations

import argparse
import json
import sys

from kfloop.registry import ModelRegistry


def _registry(args: argparse.Namespace) -> ModelRegistry:
    from kfloop.config import load_config
    from pipelines.config import PipelineConfig

    config = load_config(PipelineConfig, args.config, overrides={"registry.uri": getattr(args, "registry", None)})
    return ModelRegistry(config.registry.uri)


def list_models(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = registry.index()
    if getattr(args, "json", False):
        print(json.dumps({"registry": registry.uri, "versions": rows}, indent=2))
        return 0
    if not rows:
        print(f"no versions in {registry.uri}")
        return 0
    print(f"{'version':<28} {'state':<10} {'deploy':<6} {'created':<21} {'data':<12} flags")
    for row in rows:
        flags = "low-evidence" if row["low_evidence"] else ""
        deploy = "yes" if row["deployable"] else "no"
        print(
            f"{row['version']:<28} {row['state']:<10} {deploy:<6} {row['created_at']:<21} "
            f"{row['data_version'][:12]:<12} {flags}"
        )
    return 0


def show_model(args: argparse.Namespace) -> int:
    registry = _registry(args)
    card = registry.card(args.version)
    status = registry.status(args.version)
    body = {"card": card.model_dump(mode="json"), "status": status.model_dump(mode="json")}
    print(json.dumps(body, indent=2))
    return 0


def force_model(args: argparse.Namespace) -> int:
    registry = _registry(args)
    status = registry.force(args.version, operator=args.operator, reason=args.reason)
    print(
        f"{args.version}: {status.state.value} (by {status.history[-1].by}: {status.history[-1].reason})",
        file=sys.stderr,
    )
    return 0

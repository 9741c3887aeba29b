"""`kfloop deploy | promote | rollback | serving status` handlers (`kfloop serve` is the local stack's own:
serving/local/stack).

Arguments (wired in kfloop/cli/app.py):
    deploy:   VERSION, --canary P, --force, --reason TEXT, --operator NAME, + the common ones below
    promote:  the common ones
    rollback: --reason TEXT, + the common ones
    common:   --config FILE, --state-dir DIR, --registry-uri URI, --operator NAME,
              --cluster, --kubeconfig FILE, --context NAME, --namespace NS
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from kfloop.errors import KfloopError


def _settings(args: argparse.Namespace) -> tuple[Path, Path, Any]:
    """(state dir, manifest, registry) from the serving config and the command line."""
    from kfloop.config import load_config
    from kfloop.registry import ModelRegistry
    from serving.local.stack.config import DEFAULT_CONFIG, ServingConfig

    path = getattr(args, "config", None) or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    overrides = {
        "stack.state_dir": getattr(args, "state_dir", None),
        "predictor.registry_uri": getattr(args, "registry_uri", None),
    }
    config = load_config(ServingConfig, path, overrides)
    return config.stack.state_dir, config.stack.manifest, ModelRegistry(config.predictor.registry_uri)


def _operator(args: argparse.Namespace) -> str:
    return getattr(args, "operator", None) or getpass.getuser()


def _target(args: argparse.Namespace) -> Any:
    """The serving state to change; with --cluster, the InferenceService too."""
    from kfloop.deploy import ClusterTarget, ServingTarget

    state_dir, manifest, registry = _settings(args)
    cluster = None
    if getattr(args, "cluster", False):
        cluster = ClusterTarget(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            namespace=getattr(args, "namespace", None),
        )
    return ServingTarget(state_dir, manifest, registry, cluster)


def _run(args: argparse.Namespace, kind: str, action_of) -> int:
    from kfloop.deploy import change_serving

    try:
        target = _target(args)
        change = change_serving(target, kind, action_of(target.registry))
    except KfloopError as exc:
        print(f"kfloop {kind}: {exc.message}", file=sys.stderr)
        return 2
    if change.cluster_patch is not None:
        patch = dict(change.cluster_patch)
        print(f"patched InferenceService {patch.pop('inference_service')}: {json.dumps(patch)}", file=sys.stderr)
    print(change.summary)
    return 0


def deploy(args: argparse.Namespace) -> int:
    from kfloop.deploy import actions
    from kfloop.errors import InvalidInput

    def action_of(registry: Any):
        def act(state: Any) -> Any:
            percent = args.canary
            if percent is None:
                if state.stable is not None:
                    raise InvalidInput("give the canary's share: kfloop deploy VERSION --canary P")
                percent = 100
            return actions.deploy(
                state,
                registry,
                args.version,
                percent,
                force=args.force,
                operator=_operator(args),
                reason=args.reason or "",
            )

        return act

    return _run(args, "deploy", action_of)


def promote(args: argparse.Namespace) -> int:
    from kfloop.deploy import actions

    return _run(args, "promote", lambda registry: lambda state: actions.promote(state, operator=_operator(args)))


def rollback(args: argparse.Namespace) -> int:
    from kfloop.deploy import actions

    def act(state: Any) -> Any:
        return actions.rollback(state, operator=_operator(args), reason=getattr(args, "reason", None) or "")

    return _run(args, "rollback", lambda registry: act)


def status(args: argparse.Namespace) -> int:
    """Print the serving state (seeding it from the manifest the first time)."""
    from kfloop.deploy import load_or_seed

    try:
        state_dir, manifest, registry = _settings(args)
        state = load_or_seed(state_dir, manifest, registry)
    except KfloopError as exc:
        print(f"kfloop serving status: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(state.model_dump(mode="json"), indent=2))
    return 0

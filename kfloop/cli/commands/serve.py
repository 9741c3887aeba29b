"""`kfloop deploy | promote | rollback | serving status` handlers (`kfloop serve` is the local stack's own:
serving/local/stack).

Arguments (wired in kfloop/cli/app.py):
    deploy:   VERSION, --canary P, --force, --reason TEXT, --operator NAME, + the common ones below
    promote:  the common ones
    rollback: the common ones
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


def _cluster_step(args: argparse.Namespace, kind: str):
    """The patch of the InferenceService that goes with a change, when --cluster is given."""
    if not getattr(args, "cluster", False):
        return None

    def patch(change: Any) -> None:
        from kfloop.deploy import cluster

        ref = change.after.inference_service
        if getattr(args, "namespace", None):
            ref = ref.model_copy(update={"namespace": args.namespace})
        api = cluster.InferenceServiceApi(cluster.api_client(args.kubeconfig, args.context), ref)
        body = _patch_body(cluster, api, kind, change)
        api.patch(body)
        print(f"patched InferenceService {ref.namespace}/{ref.name}: {json.dumps(_summary(body))}", file=sys.stderr)

    return patch


def _patch_body(cluster: Any, api: Any, kind: str, change: Any) -> dict[str, Any]:
    before, after = change.before, change.after
    if kind == "promote":
        return cluster.promote_patch(api.get())
    if kind == "rollback" and before.canary is not None:
        return cluster.rollback_canary_patch()
    if kind == "rollback":
        return cluster.deploy_patch(api.get(), after.stable.version, None)
    if after.canary is not None and (before.canary is None or before.canary != after.canary):
        return cluster.deploy_patch(api.get(), after.canary.version, after.canary.percent)
    return cluster.deploy_patch(api.get(), after.stable.version, None)


def _summary(body: dict[str, Any]) -> dict[str, Any]:
    predictor = body["spec"]["predictor"]
    out: dict[str, Any] = {"canaryTrafficPercent": predictor.get("canaryTrafficPercent")}
    for container in predictor.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") in ("STORAGE_URI", "KFLOOP_VARIANT"):
                out[env["name"]] = env["value"]
    return out


def _run(args: argparse.Namespace, kind: str, action_of) -> int:
    from kfloop.deploy import apply_change

    try:
        state_dir, manifest, registry = _settings(args)
        change = apply_change(state_dir, manifest, registry, action_of(registry), _cluster_step(args, kind))
    except KfloopError as exc:
        print(f"kfloop {kind}: {exc.message}", file=sys.stderr)
        return 2
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

    return _run(args, "rollback", lambda registry: lambda state: actions.rollback(state, operator=_operator(args)))


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

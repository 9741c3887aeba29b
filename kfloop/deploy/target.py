"""Where a serving change goes, and the one function that makes it: `kfloop deploy | promote | rollback
[--cluster]` and the controller both call `change_serving`.

    target = ServingTarget(state_dir, manifest, ModelRegistry(uri), cluster=ClusterTarget(namespace="kfloop"))
    change = change_serving(target, "rollback", lambda state: rollback(state, operator="me", reason="errors"))

Locally the change is the state directory's file (which `kfloop serve` follows). With a cluster target the
same change is first sent as a JSON merge patch of the InferenceService's predictor, and the local state is
written only if the API server took it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kfloop.deploy.actions import Change, apply_change
from kfloop.deploy.state import ServingState
from kfloop.registry import ModelRegistry

log = logging.getLogger(__name__)

ChangeKind = Literal["deploy", "promote", "rollback"]


@dataclass(frozen=True)
class ClusterTarget:
    """The Kubernetes API the InferenceService lives behind."""

    kubeconfig: str | None = None
    """kubeconfig file; None: ~/.kube/config, else the pod's service account."""
    context: str | None = None
    """kubeconfig context; None: its current one."""
    namespace: str | None = None
    """The InferenceService's namespace; None: the one in the serving state (from the manifest)."""


@dataclass(frozen=True)
class ServingTarget:
    """The serving state to change: the local state directory, seeded from the manifest, checked against the
    registry; and, with `cluster`, the InferenceService on a cluster."""

    state_dir: Path
    manifest: Path
    registry: ModelRegistry
    cluster: ClusterTarget | None = None


def change_serving(target: ServingTarget, kind: ChangeKind, action: Callable[[ServingState], Change]) -> Change:
    """Run `action` on the current state and keep the result (see `apply_change`); with a cluster target the
    InferenceService is patched first. The returned change carries the patch's summary in `cluster_patch`."""
    sent: list[dict[str, Any]] = []
    before_write = None
    if target.cluster is not None:
        cluster_target = target.cluster

        def before_write(change: Change) -> None:
            sent.append(patch_cluster(cluster_target, kind, change))

    change = apply_change(target.state_dir, target.manifest, target.registry, action, before_write)
    return replace(change, cluster_patch=sent[0]) if sent else change


def patch_cluster(target: ClusterTarget, kind: ChangeKind, change: Change) -> dict[str, Any]:
    """Send the change's merge patch to the InferenceService; returns what it set (for the operator's log)."""
    from kfloop.deploy import cluster

    ref = change.after.inference_service
    if target.namespace:
        ref = ref.model_copy(update={"namespace": target.namespace})
    api = cluster.InferenceServiceApi(cluster.api_client(target.kubeconfig, target.context), ref)
    body = _patch_body(cluster, api, kind, change)
    api.patch(body)
    summary = {"inference_service": f"{ref.namespace}/{ref.name}", **_summary(body)}
    log.info("patched InferenceService %s: %s", summary["inference_service"], summary)
    return summary


def _patch_body(cluster: Any, api: Any, kind: ChangeKind, change: Change) -> dict[str, Any]:
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

"""`--cluster`: the same change, as a JSON merge patch of the InferenceService's predictor (kubernetes client).

KServe's canary rollout (Serverless/Knative mode only) works on the predictor spec:
- deploy VERSION --canary P: the predictor's STORAGE_URI names the version's registry folder and
  canaryTrafficPercent is P: the new revision gets P%, the previous rolled-out revision the rest.
- promote: canaryTrafficPercent removed (the latest revision takes every request); the variant label becomes
  stable.
- rollback of a canary: canaryTrafficPercent 0 (every request back on the previous revision at once, no new
  rollout). Rollback to an earlier stable version: its STORAGE_URI again, no canary.

A merge patch replaces lists whole, so the patch carries the predictor's full container list, read first.
"""

from __future__ import annotations

import copy
from typing import Any

from kfloop.deploy.state import PREDICTOR_CONTAINER, STORAGE_URI_ENV, VARIANT_ENV, InferenceServiceRef
from kfloop.errors import ConfigError, KfloopError, NotFound

GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class ClusterError(KfloopError):
    """The API server refused or could not be reached."""

    http_status = 502


def storage_uri_for(current: str, version: str) -> str:
    """The current STORAGE_URI with its last segment (the version folder) replaced."""
    return f"{current.rstrip('/').rsplit('/', 1)[0]}/{version}"


def _with_env(container: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    updated = copy.deepcopy(container)
    env = [e for e in updated.get("env") or [] if e.get("name") not in values]
    env.extend({"name": name, "value": value} for name, value in values.items())
    updated["env"] = env
    return updated


def _containers(isvc: dict[str, Any], **env: str) -> list[dict[str, Any]]:
    containers = isvc.get("spec", {}).get("predictor", {}).get("containers") or []
    if not any(c.get("name") == PREDICTOR_CONTAINER for c in containers):
        raise ConfigError(f"the InferenceService's predictor has no container named {PREDICTOR_CONTAINER}")
    return [_with_env(c, env) if c.get("name") == PREDICTOR_CONTAINER else c for c in containers]


def _current_storage_uri(isvc: dict[str, Any]) -> str:
    for container in isvc.get("spec", {}).get("predictor", {}).get("containers") or []:
        for env in container.get("env") or []:
            if container.get("name") == PREDICTOR_CONTAINER and env.get("name") == STORAGE_URI_ENV:
                return env["value"]
    raise ConfigError(f"the InferenceService's predictor sets no {STORAGE_URI_ENV}")


def deploy_patch(isvc: dict[str, Any], version: str, percent: int | None) -> dict[str, Any]:
    """percent None: the version becomes stable outright (no canary)."""
    uri = storage_uri_for(_current_storage_uri(isvc), version)
    variant = "stable" if percent is None else "canary"
    containers = _containers(isvc, **{STORAGE_URI_ENV: uri, VARIANT_ENV: variant})
    return {"spec": {"predictor": {"canaryTrafficPercent": percent, "containers": containers}}}


def promote_patch(isvc: dict[str, Any]) -> dict[str, Any]:
    containers = _containers(isvc, **{VARIANT_ENV: "stable"})
    return {"spec": {"predictor": {"canaryTrafficPercent": None, "containers": containers}}}


def rollback_canary_patch() -> dict[str, Any]:
    return {"spec": {"predictor": {"canaryTrafficPercent": 0}}}


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A client from a kubeconfig (default ~/.kube/config), else the pod's service account."""
    from kubernetes import client, config

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException:
        if kubeconfig:
            raise
        config.load_incluster_config()
        return client.ApiClient()


class InferenceServiceApi:
    """Read and patch one InferenceService."""

    def __init__(self, client: Any, ref: InferenceServiceRef) -> None:
        from kubernetes import client as k8s

        self.api = k8s.CustomObjectsApi(client)
        self.ref = ref

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(GROUP, API_VERSION, self.ref.namespace, PLURAL, self.ref.name, *args)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"InferenceService {self.ref.namespace}/{self.ref.name} does not exist") from None
            raise ClusterError(f"{what} InferenceService {self.ref.name}: {exc.status} {exc.reason}") from None
        except HTTPError as exc:
            raise ClusterError(f"{what} InferenceService {self.ref.name}: API server unreachable ({exc})") from None

    def get(self) -> dict[str, Any]:
        return self._call("reading", self.api.get_namespaced_custom_object)

    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (the client sends application/merge-patch+json for custom objects)."""
        return self._call("patching", self.api.patch_namespaced_custom_object, body)

"""Least privilege in every overlay: no Secret with data, every container limited and unprivileged, a service
account per workload, one narrow Role, network policies that admit only who needs each service, disruption
budgets that let a node drain, images and kustomize fields declared once and current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kfloop.config import load_config
from pipelines.config import PipelineConfig
from tests.manifests import CRD_DIR, OVERLAYS, REPO, one, pod_specs, render

pytestmark = pytest.mark.skipif(not CRD_DIR.is_dir(), reason="needs ../shared/crds beside the clone")
MANIFESTS = REPO / "manifests"
# The labels KServe puts on an InferenceService's pods (serving.kserve.io/inferenceservice, component).
ISVC_POD = {"serving.kserve.io/inferenceservice": "kfloop-ranker"}


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request) -> list[dict]:
    return render(MANIFESTS / "overlays" / request.param)


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_no_secret_is_rendered_or_generated(rendered):
    """Secrets are created by the platform engineer (README: Secrets) and only referenced here."""
    assert [d["metadata"]["name"] for d in rendered if d["kind"] == "Secret"] == []
    for path in MANIFESTS.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(path.read_text()), path


def test_every_container_has_limits_and_runs_non_root_on_a_read_only_root(rendered):
    specs = pod_specs(rendered)
    assert len(specs) >= 10
    for name, spec in specs.items():
        pod_context = spec.get("securityContext", {})
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["limits"].keys(), where
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert not context.get("privileged", False), where
            seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
            assert context.get("runAsUser", pod_context.get("runAsUser", 1)) != 0, where


def test_kfloop_containers_write_only_to_mounted_volumes(rendered):
    """A read-only root: Python's, pyarrow's and SQLite's temporary files go to a mounted /tmp."""
    for name, spec in pod_specs(rendered).items():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in [c for c in spec["containers"] if c.get("command") == ["kfloop"]]:
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], name


def test_each_workload_has_its_own_service_account_and_only_the_controller_a_token(rendered):
    accounts = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "ServiceAccount"}
    used = {name: spec.get("serviceAccountName") for name, spec in pod_specs(rendered).items()}
    assert None not in used.values() and "default" not in used.values(), used
    assert set(used.values()) == set(accounts)
    # Shared only where the pods are one workload's: the InferenceService's roles, the two features Jobs.
    shared = {"kfloop-ranker": 3, "kfloop-features": 2}
    for account in accounts:
        assert list(used.values()).count(account) == shared.get(account, 1), account
    mounting = [n for n, a in accounts.items() if a.get("automountServiceAccountToken", True)]
    assert mounting == ["kfloop-controller"]


def test_the_only_role_lets_the_controller_get_and_patch_inference_services(rendered):
    kinds = {d["kind"] for d in rendered}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    (role,) = [d for d in rendered if d["kind"] == "Role"]
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), (key, rule)
    assert role["rules"] == [
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "patch"]}
    ]
    (binding,) = [d for d in rendered if d["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    namespace = role["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kfloop-controller", "namespace": namespace}]
    controller = one(rendered, "Deployment", "kfloop-controller")
    assert controller["spec"]["template"]["spec"]["serviceAccountName"] == "kfloop-controller"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def admits(policy: dict[str, Any], pod: dict[str, str], namespace: str, port: str = "http") -> bool:
    """Whether a pod (its labels) in a namespace (by name) may reach `port` of the policy's pods."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    own = namespace == policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress", []):
        if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
            continue
        for peer in rule.get("from", []):
            in_namespace = _selects(peer["namespaceSelector"], namespace_labels) if "namespaceSelector" in peer else own
            if in_namespace and _selects(peer.get("podSelector", {}), pod):
                return True
    return False


def _pod_labels(rendered: list[dict], kind: str, name: str) -> dict[str, str]:
    return one(rendered, kind, name)["spec"]["template"]["metadata"]["labels"]


def test_the_audit_sink_admits_predictors_logger_explainer_controller_and_compliance_readers_only(rendered):
    policy = one(rendered, "NetworkPolicy", "kfloop-audit-sink")
    namespace = policy["metadata"]["namespace"]
    audit = _pod_labels(rendered, "Deployment", "kfloop-audit-sink")
    assert _selects(policy["spec"]["podSelector"], audit) and policy["spec"]["policyTypes"] == ["Ingress"]
    # KServe's payload logger is an agent container in the predictor's pods: the predictor's labels.
    allowed = [
        {**ISVC_POD, "component": "predictor"},
        {**ISVC_POD, "component": "explainer"},
        _pod_labels(rendered, "Deployment", "kfloop-controller"),
        {"kfloop.io/audit-reader": "true"},
    ]
    refused = [
        {**ISVC_POD, "component": "transformer"},
        _pod_labels(rendered, "StatefulSet", "kfloop-collector"),
        _pod_labels(rendered, "Deployment", "kfloop-joiner"),
        _pod_labels(rendered, "StatefulSet", "kfloop-feature-follower"),
        {"app": "anything"},
    ]
    assert all(admits(policy, pod, namespace) for pod in allowed)
    assert not any(admits(policy, pod, namespace) for pod in refused)
    assert not admits(policy, {**ISVC_POD, "component": "predictor"}, "another-team")
    assert admits(policy, {"app.kubernetes.io/name": "prometheus"}, "monitoring")
    assert not admits(policy, {"app.kubernetes.io/name": "grafana"}, "monitoring")


def test_the_collector_admits_the_ingress_the_predictors_and_prometheus_only(rendered):
    policy = one(rendered, "NetworkPolicy", "kfloop-collector")
    namespace = policy["metadata"]["namespace"]
    assert _selects(policy["spec"]["podSelector"], _pod_labels(rendered, "StatefulSet", "kfloop-collector"))
    assert admits(policy, {"app": "istio-ingressgateway"}, "istio-system")
    assert admits(policy, {**ISVC_POD, "component": "predictor"}, namespace)
    assert admits(policy, {"app.kubernetes.io/name": "prometheus"}, "monitoring")
    for pod in ({**ISVC_POD, "component": "transformer"}, _pod_labels(rendered, "Deployment", "kfloop-joiner")):
        assert not admits(policy, pod, namespace)
    assert not admits(policy, {"app": "istio-ingressgateway"}, "another-team")


def test_the_controller_and_redis_admit_only_their_callers(rendered):
    controller = one(rendered, "NetworkPolicy", "kfloop-controller")
    assert admits(controller, {"app.kubernetes.io/name": "alertmanager"}, "monitoring")
    assert not admits(controller, {"app.kubernetes.io/name": "alertmanager"}, "another-team")
    assert not admits(
        controller, _pod_labels(rendered, "Deployment", "kfloop-joiner"), controller["metadata"]["namespace"]
    )
    redis = one(rendered, "NetworkPolicy", "kfloop-redis")
    namespace = redis["metadata"]["namespace"]
    for pod in (
        {**ISVC_POD, "component": "transformer"},
        _pod_labels(rendered, "StatefulSet", "kfloop-feature-follower"),
        one(rendered, "Job", "kfloop-features-apply")["spec"]["template"]["metadata"]["labels"],
    ):
        assert admits(redis, pod, namespace, "redis"), pod
    assert not admits(redis, {**ISVC_POD, "component": "predictor"}, namespace, "redis")


def test_every_network_policy_and_disruption_budget_selects_a_workload(rendered):
    workloads = [d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")]
    for doc in [d for d in rendered if d["kind"] in ("NetworkPolicy", "PodDisruptionBudget")]:
        selector = doc["spec"]["podSelector" if doc["kind"] == "NetworkPolicy" else "selector"]
        assert [w for w in workloads if _selects(selector, w["spec"]["template"]["metadata"]["labels"])], doc


def test_disruption_budgets_cover_the_scaled_parts_and_let_a_node_drain(rendered):
    budgets = [d for d in rendered if d["kind"] == "PodDisruptionBudget"]
    covered = set()
    for budget in budgets:
        (workload,) = [
            w
            for w in rendered
            if w["kind"] == "StatefulSet"
            and _selects(budget["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        covered.add(workload["metadata"]["name"])
        replicas = workload["spec"]["replicas"]
        spec = budget["spec"]
        assert spec.get("maxUnavailable", 0) >= 1 or spec["minAvailable"] < replicas, budget["metadata"]["name"]
    assert covered == {"kfloop-collector", "kfloop-feature-follower"}


def test_followers_split_users_into_as_many_shares_as_there_are_followers(rendered):
    follower = one(rendered, "StatefulSet", "kfloop-feature-follower")
    (args,) = [c["args"] for c in follower["spec"]["template"]["spec"]["containers"]]
    assert f"--partition-count={follower['spec']['replicas']}" in args


def _declared_images() -> dict[str, str]:
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    return {image["name"]: f"{image['newName']}:{image['newTag']}" for image in base["images"]}


def test_every_image_is_one_declared_in_the_base_and_the_pipeline_uses_the_same(rendered):
    declared = _declared_images()
    for name, spec in pod_specs(rendered).items():
        for container in containers(spec):
            assert container["image"] in declared.values(), (name, container["image"])
    pipeline_image = declared["kfloop-pipeline"]
    cluster = load_config(PipelineConfig, REPO / "pipelines" / "profiles" / "cluster.yaml")
    # Neither names an image of its own: the components take the base's kfloop-pipeline entry.
    assert cluster.base_image is None and PipelineConfig().base_image is None
    compiled = (REPO / "pipelines" / "compiled" / "training.yaml").read_text()
    assert {line.split("image:")[1].strip() for line in compiled.splitlines() if "image:" in line} == {pipeline_image}


DEPRECATED = {"bases", "patchesStrategicMerge", "patchesJson6902", "commonLabels", "vars", "imageTags"}


def test_kustomizations_use_current_fields_only():
    paths = sorted(MANIFESTS.rglob("kustomization.yaml"))
    assert Path("overlays/dev/kustomization.yaml") in [p.relative_to(MANIFESTS) for p in paths]
    for path in paths:
        kustomization = yaml.safe_load(path.read_text())
        assert not DEPRECATED & kustomization.keys(), path
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text())
        assert kustomization["resources"] == ["../../base"] and kustomization["namespace"] == OVERLAYS[overlay]


# The volume types Pod Security's `restricted` level admits.
RESTRICTED_VOLUMES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI"}


def test_the_namespace_audits_the_restricted_level_and_every_pod_meets_it(rendered):
    (namespace,) = [d for d in rendered if d["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")
    for name, spec in pod_specs(rendered).items():
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (name, volume)
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name

"""The monitoring loop as each overlay deploys it: the controller (one replica, its state on a volume, its token
from a Secret, its config one the code accepts), alerts routed to it as the local Alertmanager routes them, the
InferenceService's pods scraped, a Grafana dashboard reading only documented series; the cluster pipeline
profile and the configs agree on where things are; every Secret referenced is documented in the README."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kfloop.config import load_config
from kfloop.deploy import read_manifest
from monitoring.controller import flags
from monitoring.controller.config import ControllerConfig
from pipelines.config import PipelineConfig
from tests.manifests import CRD_DIR, OVERLAYS, REPO, mounts, one, pod_specs, render

pytestmark = pytest.mark.skipif(not CRD_DIR.is_dir(), reason="needs ../shared/crds beside the clone")
MANIFESTS = REPO / "manifests"


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request) -> list[dict]:
    return render(MANIFESTS / "overlays" / request.param)


def _mount_of(path: PurePosixPath | str, volumes_at: dict[str, dict]) -> tuple[str, dict]:
    """The deepest mount holding `path`: (mountPath, volume)."""
    path = PurePosixPath(path)
    holding = [m for m in volumes_at if path == PurePosixPath(m) or PurePosixPath(m) in path.parents]
    assert holding, f"{path} is on no mounted volume"
    deepest = max(holding, key=len)
    return deepest, volumes_at[deepest]


def _controller(rendered: list[dict]) -> tuple[dict, dict, dict[str, dict], ControllerConfig, list[str]]:
    deployment = one(rendered, "Deployment", "kfloop-controller")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes_at = mounts(spec, container)
    (config_arg,) = [a for a in container["args"] if a.startswith("--config=")]
    config_path = config_arg.split("=", 1)[1]
    mount, volume = _mount_of(config_path, volumes_at)
    config_map = one(rendered, "ConfigMap", volume["configMap"]["name"])
    text = config_map["data"][str(PurePosixPath(config_path).relative_to(mount))]
    return deployment, container, volumes_at, ControllerConfig.model_validate(yaml.safe_load(text)), container["args"]


def test_the_controller_runs_once_in_cluster_mode_with_its_state_on_a_volume(rendered, tmp_path):
    deployment, container, volumes_at, config, args = _controller(rendered)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert (container["command"], args[0]) == (["kfloop"], "controller")
    assert config.mode == "cluster" and config.host == "0.0.0.0"
    for path in (config.state_dir, config.serving.state_dir, config.audit.dir):
        claim = _mount_of(path, volumes_at)[1]["persistentVolumeClaim"]["claimName"]
        assert claim == "kfloop-controller-state", path
    assert one(rendered, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": config.port}
    assert one(rendered, "Service", "kfloop-controller")["spec"]["ports"][0]["port"] == config.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The manifest it seeds from and names the InferenceService by: the one manifests/serving deploys.
    _, volume = _mount_of(config.serving.manifest, volumes_at)
    manifest = one(rendered, "ConfigMap", volume["configMap"]["name"])["data"][config.serving.manifest.name]
    (tmp_path / "isvc.yaml").write_text(manifest)
    assert (
        read_manifest(tmp_path / "isvc.yaml").name
        == one(rendered, "InferenceService", "kfloop-ranker")["metadata"]["name"]
    )


def test_the_controller_takes_its_token_from_a_secret_and_patches_its_own_namespace(rendered, tmp_path):
    deployment, container, volumes_at, config, args = _controller(rendered)
    assert not config.create_token_file
    mount, volume = _mount_of(config.token_file, volumes_at)
    assert volume["secret"]["secretName"] == "kfloop-controller-token"
    assert str(config.token_file.relative_to(mount)) == "token"
    # The KFP API's credentials: a projected token with its audience, not a Secret copied around.
    mount, volume = _mount_of(config.retrain.kfp.token_file, volumes_at)
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    # --namespace is the pod's own (downward API), so an overlay's namespace is the one patched.
    assert "--namespace=$(POD_NAMESPACE)" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    from kfloop.cli.app import build_parser

    namespace = deployment["metadata"]["namespace"]
    assert config.serving.namespace is None  # the file names none: the flag sets it
    parsed = build_parser().parse_args([a.replace("$(POD_NAMESPACE)", namespace) for a in args])
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert load_config(ControllerConfig, path, flags.overrides(parsed)).serving.namespace == namespace


def _local_alertmanager() -> dict[str, Any]:
    return yaml.safe_load((REPO / "monitoring" / "alertmanager" / "alertmanager.yaml").read_text())


def _matchers(texts: list[str]) -> list[dict[str, str]]:
    """Alertmanager's `name = value` matchers as an AlertmanagerConfig writes them."""
    parsed = [re.fullmatch(r"\s*(\w+)\s*(=~|!~|!=|=)\s*(.+?)\s*", text) for text in texts]
    return [{"name": m.group(1), "matchType": m.group(2), "value": m.group(3)} for m in parsed if m]


def test_alerts_reach_the_controller_grouped_and_inhibited_as_locally(rendered):
    (config,) = [d for d in rendered if d["kind"] == "AlertmanagerConfig"]
    local = _local_alertmanager()
    route, local_route = config["spec"]["route"], local["route"]
    assert route["groupBy"] == local_route["group_by"]
    assert (route["groupWait"], route["groupInterval"], route["repeatInterval"]) == (
        local_route["group_wait"],
        local_route["group_interval"],
        local_route["repeat_interval"],
    )
    (receiver,) = config["spec"]["receivers"]
    assert route["receiver"] == receiver["name"]
    (webhook,) = receiver["webhookConfigs"]
    (local_webhook,) = local["receivers"][0]["webhook_configs"]
    assert (webhook["sendResolved"], webhook["maxAlerts"]) == (
        local_webhook["send_resolved"],
        local_webhook["max_alerts"],
    )
    url, local_url = urlsplit(webhook["url"]), urlsplit(local_webhook["url"])
    service = one(rendered, "Service", "kfloop-controller")
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert (url.port, url.path) == (service["spec"]["ports"][0]["port"], local_url.path)
    authorization = webhook["httpConfig"]["authorization"]
    assert authorization["type"] == local_webhook["http_config"]["authorization"]["type"] == "Bearer"
    _, _, volumes_at, controller, _ = _controller(rendered)
    _, volume = _mount_of(controller.token_file, volumes_at)
    assert authorization["credentials"] == {"name": volume["secret"]["secretName"], "key": controller.token_file.name}
    expected = [
        {
            "sourceMatch": _matchers(rule["source_matchers"]),
            "targetMatch": _matchers(rule["target_matchers"]),
            "equal": rule["equal"],
        }
        for rule in local["inhibit_rules"]
    ]
    assert config["spec"]["inhibitRules"] == expected


def test_the_inference_service_pods_are_scraped_and_the_rules_deployed(rendered):
    (monitor,) = [d for d in rendered if d["kind"] == "PodMonitor"]
    isvc = one(rendered, "InferenceService", "kfloop-ranker")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]
    }
    assert [(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]] == [("user-port", "/metrics")]
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    generated = yaml.safe_load((MANIFESTS / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"] == generated["spec"]


def _documented_metrics() -> set[str]:
    table = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `([a-z_:]+)`", table, flags=re.MULTILINE))


def test_the_grafana_dashboard_shows_the_loop_from_documented_series(rendered):
    (config_map,) = [d for d in rendered if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    (text,) = config_map["data"].values()
    dashboard = json.loads(text)
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("traffic split", "reward", "latency", "drift", "controller actions"):
        assert topic in titles, topic
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    recorded = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    known = _documented_metrics() | recorded
    read = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            read |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bkfloop[a-z0-9_:]+", target["expr"])}
    assert read and read <= known, read - known
    assert {"kfloop_feature_drift", "kfloop:online_ctr", "kfloop_controller_actions_total"} <= read


def test_the_cluster_pipeline_profile_and_the_configs_agree_on_where_things_are(rendered):
    profile = load_config(PipelineConfig, REPO / "pipelines" / "profiles" / "cluster.yaml")
    params = one(
        rendered, "ConfigMap", next(d["metadata"]["name"] for d in rendered if "kfloop-params" in d["metadata"]["name"])
    )
    assert profile.features.event_log.log_uri == params["data"]["KFLOOP_LOG_URI"]
    _, _, _, controller, _ = _controller(rendered)
    serving = next(d for d in rendered if d["metadata"]["name"].startswith("kfloop-serving-config-"))
    explainer = yaml.safe_load(serving["data"]["serving.yaml"])["explainer"]
    assert profile.registry.uri == controller.serving.registry_uri == explainer["registry_uri"]
    assert "://" in profile.pipeline_root


def _referenced_secrets(rendered: list[dict]) -> dict[str, set[str]]:
    """Secret name -> the keys the manifests read from it (a whole mounted Secret: its documented keys)."""
    found: dict[str, set[str]] = {}
    for spec in pod_specs(rendered).values():
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                found.setdefault(volume["secret"]["secretName"], set())
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.setdefault(ref["name"], set()).add(ref["key"])
    for account in [d for d in rendered if d["kind"] == "ServiceAccount"]:
        for secret in account.get("secrets", []):
            found.setdefault(secret["name"], set())
    for config in [d for d in rendered if d["kind"] == "AlertmanagerConfig"]:
        for receiver in config["spec"]["receivers"]:
            for hook in receiver.get("webhookConfigs", []):
                credentials = hook["httpConfig"]["authorization"]["credentials"]
                found.setdefault(credentials["name"], set()).add(credentials["key"])
    return found


def test_every_secret_referenced_is_documented_with_its_keys(rendered):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Secrets") :]
    section = section[: section.index("\n## ", 1) if "\n## " in section else None]
    secrets = _referenced_secrets(rendered)
    assert {"kfloop-object-store", "kfloop-controller-token", "kfloop-segment", "kfloop-serving-token"} <= set(secrets)
    for name, keys in secrets.items():
        (row,) = [line for line in section.splitlines() if line.startswith(f"| `{name}`")]
        for key in keys:
            assert f"`{key}`" in row, (name, key)


# What the cluster's controller config may set differently from the local one: where things are and how it acts
# on them (mode, the KFP run instead of a subprocess), nothing about when it acts.
CLUSTER_ONLY = {"host", "mode", "state_dir", "token_file", "create_token_file", "serving", "audit"}
CLUSTER_ONLY_RETRAIN = {"command", "kfp", "poll_interval_s"}
# Where the counts are read; and a cluster has no shadow stage (nothing mirrors requests there).
CLUSTER_ONLY_EXPERIMENT = {"counts_url", "mirror_counts_url", "stages"}


def test_the_cluster_controller_decides_as_the_local_one(rendered):
    _, _, _, cluster, _ = _controller(rendered)
    local = load_config(ControllerConfig, MANIFESTS / "controller" / "controller.yaml")
    cluster_data, local_data = cluster.model_dump(mode="json"), local.model_dump(mode="json")
    for key in set(local_data) - CLUSTER_ONLY:
        if key == "retrain":
            for sub in set(local_data[key]) - CLUSTER_ONLY_RETRAIN:
                assert cluster_data[key][sub] == local_data[key][sub], f"retrain.{sub}"
        elif key == "experiment":
            for sub in set(local_data[key]) - CLUSTER_ONLY_EXPERIMENT:
                assert cluster_data[key][sub] == local_data[key][sub], f"experiment.{sub}"
            canaries = [stage for stage in local_data[key]["stages"] if stage["mode"] == "canary"]
            assert cluster_data[key]["stages"] == canaries
        else:
            assert cluster_data[key] == local_data[key], key

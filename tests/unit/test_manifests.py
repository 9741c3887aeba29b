"""`kubectl apply -k manifests/` would be accepted: rendered, then validated offline."""

from __future__ import annotations

import pytest

from tests.manifests import CRD_DIR, REPO, render, validate

pytestmark = pytest.mark.skipif(not CRD_DIR.is_dir(), reason="needs ../shared/crds beside the clone")


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(REPO / "manifests")


def test_every_rendered_object_validates(rendered):
    assert rendered
    for doc in rendered:
        validate(doc)


def test_everything_lands_in_the_kfloop_namespace(rendered):
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "kfloop", doc["metadata"]["name"]


def _mounts(rendered: list[dict], kind: str, name: str) -> tuple[dict, dict[str, dict]]:
    (obj,) = [d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name]
    spec = obj["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    container = spec["containers"][0]
    return container, {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def test_collectors_write_and_followers_read_the_same_write_ahead_volume(rendered):
    collector, collector_mounts = _mounts(rendered, "StatefulSet", "kfloop-collector")
    follower, follower_mounts = _mounts(rendered, "StatefulSet", "kfloop-feature-follower")
    assert "--writer-id=$(POD_NAME)" in collector["args"]
    assert "--partition-index=$(POD_INDEX)" in follower["args"]
    wal = "/var/lib/kfloop/wal"
    assert f"--wal-dir={wal}" in collector["args"]
    claim = collector_mounts[wal]["persistentVolumeClaim"]["claimName"]
    assert follower_mounts[wal]["persistentVolumeClaim"]["claimName"] == claim
    (pvc,) = [d for d in rendered if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_configmaps_carry_configs_the_code_accepts(rendered):
    """The files mounted from ConfigMaps validate against the deployables' typed configs."""
    import yaml

    from kfloop.features.config import FeaturesConfig

    (features,) = [d for d in rendered if d["kind"] == "ConfigMap" and "features-config" in d["metadata"]["name"]]
    config = FeaturesConfig.model_validate(yaml.safe_load(features["data"]["features.yaml"]))
    assert config.store.online_store == "redis"


def test_every_service_monitor_selects_a_service_with_its_port(rendered):
    services = [d for d in rendered if d["kind"] == "Service"]
    monitors = [d for d in rendered if d["kind"] == "ServiceMonitor"]
    assert monitors
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"].get("labels", {}).items()]
        assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_a_bad_field_is_caught_by_the_validator(rendered):
    """The validator itself must be able to fail: an unknown field in a custom and in a core kind."""
    import copy

    import jsonschema
    import kubernetes_validate

    monitor = copy.deepcopy(next(d for d in rendered if d["kind"] == "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    sts = copy.deepcopy(next(d for d in rendered if d["kind"] == "StatefulSet"))
    sts["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(sts)

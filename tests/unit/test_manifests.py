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


def test_collector_replicas_have_their_own_write_ahead_volume_and_writer_id(rendered):
    (sts,) = [d for d in rendered if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "kfloop-collector"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert "--writer-id=$(POD_NAME)" in container["args"]
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["wal"]


def test_service_monitor_selects_the_collector_service(rendered):
    (monitor,) = [d for d in rendered if d["kind"] == "ServiceMonitor"]
    (service,) = [d for d in rendered if d["kind"] == "Service" and d["metadata"]["name"] == "kfloop-collector"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
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

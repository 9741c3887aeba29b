"""`kubectl apply -k manifests/overlays/OVERLAY` would be accepted: each overlay rendered, then validated offline."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import pytest
import yaml

from kfloop.audit.config import STORE_URL_ENV
from tests.manifests import CRD_DIR, OVERLAYS, REPO, one, pod_specs, render, validate

pytestmark = pytest.mark.skipif(not CRD_DIR.is_dir(), reason="needs ../shared/crds beside the clone")


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request) -> list[dict]:
    return render(REPO / "manifests" / "overlays" / request.param)


def test_every_rendered_object_validates(rendered):
    assert rendered
    for doc in rendered:
        validate(doc)


def test_everything_lands_in_the_overlays_namespace(rendered):
    (namespace,) = [d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace"]
    assert namespace in OVERLAYS.values()
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


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
    routing = copy.deepcopy(next(d for d in rendered if d["kind"] == "AlertmanagerConfig"))
    routing["spec"]["route"]["group_by"] = ["alertname"]  # Alertmanager's own spelling, not the CRD's
    with pytest.raises(jsonschema.ValidationError):
        validate(routing)
    cron = copy.deepcopy(next(d for d in rendered if d["kind"] == "CronJob"))
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(cron)


def test_every_custom_kind_rendered_has_its_crd_schema(rendered):
    """A custom kind without its CRD would fall to the core validator: each one must be checked against its own."""
    from tests.manifests import crd_schemas

    custom = {(d["apiVersion"], d["kind"]) for d in rendered if "." in d["apiVersion"].split("/")[0]}
    custom -= {(v, k) for v, k in custom if v.split("/")[0].endswith("k8s.io") or v.startswith(("apps/", "batch/"))}
    assert custom == {
        ("serving.kserve.io/v1beta1", "InferenceService"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"),
    }
    assert custom <= crd_schemas().keys()


IMAGE = "ghcr.io/kfloop/kfloop-serving:0.1.0"


def test_the_inference_service_and_the_audit_sink_are_deployed(rendered):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert {
        ("InferenceService", "kfloop-ranker"),
        ("Deployment", "kfloop-audit-sink"),
        ("Service", "kfloop-audit-sink"),
        ("ServiceMonitor", "kfloop-audit-sink"),
        ("PersistentVolumeClaim", "kfloop-audit-sqlite"),
    } <= kinds


def test_the_image_rewrite_reaches_every_kfloop_container(rendered):
    """The top-level `images:` entry applies to the InferenceService's containers too, not only core kinds."""
    specs = pod_specs(rendered)
    assert {"kfloop-ranker/predictor", "kfloop-ranker/transformer", "kfloop-ranker/explainer"} <= specs.keys()
    images = {name: [c["image"] for c in spec["containers"]] for name, spec in specs.items()}
    for name, found in images.items():
        if name != "kfloop-redis":
            assert found == [IMAGE], name


# What KServe's controller appends to a custom transformer's and explainer's args (kserve
# pkg/apis/serving/v1beta1/transformer_custom.go, explainer_custom.go); a custom predictor gets nothing.
CONTROLLER_ARGS = ["--model_name", "kfloop-ranker", "--predictor_host", "kfloop-ranker-predictor.kfloop"]
CONTROLLER_ARGS += ["--http_port", "8080", "--workers", "4"]
# A value for each $(VAR) the kubelet fills from the pod or a ConfigMap (typed flags need a plausible one).
SAMPLE_ENV = {"POD_INDEX": "0", "POD_NAMESPACE": "kfloop"}


def _expanded(arg: str, container: dict) -> str:
    """`$(VAR)` as the kubelet expands it; one the container does not define would be passed on literally."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}

    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in env, f"$({name}) is not in {container['name']}'s env: the process would get it verbatim"
        return env[name] or SAMPLE_ENV.get(name, f"sample-{name.lower()}")

    return re.sub(r"\$\((\w+)\)", value, arg)


def test_every_container_runs_a_kfloop_subcommand_whose_flags_parse(rendered, capsys):
    """One entry form: `kfloop SUBCOMMAND ...` in every container of ours, a subcommand that exists, and its
    args (with what KServe's controller adds) accepted by kfloop's own parser."""
    from kfloop.cli.app import build_parser, command_for

    parser = build_parser()
    ran = set()
    for name, spec in pod_specs(rendered).items():
        for container in [c for c in spec["containers"] if c["image"] == IMAGE]:
            assert container["command"] == ["kfloop"], name
            argv = [_expanded(arg, container) for arg in container["args"]]
            if name.endswith(("/transformer", "/explainer")):
                argv += CONTROLLER_ARGS
            command = command_for(argv)
            assert command is not None and argv[: len(command.words)] == list(command.words), (name, argv)
            try:
                assert parser.parse_args(argv)._command is command
            except SystemExit:
                pytest.fail(f"{name}: `kfloop {' '.join(argv)}` does not parse: {capsys.readouterr().err}")
            ran.add(command.words)
    assert ran == {("predictor",), ("transformer",), ("explainer",), ("collector",), ("features", "follow")} | {
        ("audit", "sink"),
        ("joiner",),
        ("controller",),
        ("features", "apply"),
        ("features", "materialize"),
    }
    with pytest.raises(SystemExit):  # a flag that drifted (the roles' old --config-file) would be caught
        parser.parse_args(["predictor", "--config-file=/etc/kfloop/serving.yaml"])


def test_every_configmap_reference_names_a_rendered_configmap(rendered):
    """Generated ConfigMaps get a content hash in their name; every reference must follow it (volumes of the
    InferenceService through manifests/serving/kustomizeconfig.yaml, env through kustomize's defaults)."""
    config_maps = {d["metadata"]["name"] for d in rendered if d["kind"] == "ConfigMap"}
    referenced = set()
    for name, spec in pod_specs(rendered).items():
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                referenced.add((name, volume["configMap"]["name"]))
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    referenced.add((name, ref["name"]))
    assert referenced
    for name, config_map in referenced:
        assert config_map in config_maps, f"{name} refers to {config_map}, which is not rendered"


def test_every_service_selects_pods_that_have_its_target_port(rendered):
    workloads = [d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")]
    for service in [d for d in rendered if d["kind"] == "Service"]:
        selector = service["spec"]["selector"]
        selected = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        (workload,) = selected
        assert workload["spec"]["selector"]["matchLabels"].items() <= selector.items()
        ports = {
            p["name"]: p["containerPort"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def _audit_container(rendered: list[dict]) -> tuple[dict, dict, dict[str, dict]]:
    deployment = one(rendered, "Deployment", "kfloop-audit-sink")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    return deployment, container, {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def _audit_config_file(rendered: list[dict], mounts: dict[str, dict]) -> dict:
    config_map = one(rendered, "ConfigMap", mounts["/etc/kfloop"]["configMap"]["name"])
    return yaml.safe_load(config_map["data"]["audit-sink.yaml"])


def test_the_audit_sink_runs_one_writer_on_its_own_volume(rendered):
    from serving.audit.config import AuditSinkConfig

    deployment, container, mounts = _audit_container(rendered)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two SQLite writers, RWO volume
    config = AuditSinkConfig.model_validate(_audit_config_file(rendered, mounts))
    assert (config.host, config.port) == ("0.0.0.0", 8095)
    assert config.store.is_sqlite
    store_dir = config.store.sqlite_path.parent.as_posix()
    claim = mounts[store_dir]["persistentVolumeClaim"]["claimName"]
    assert one(rendered, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": config.port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys() and "memory" in container["resources"][
        "limits"
    ]
    (env,) = container["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "kfloop-audit-store", "key": "url", "optional": True}


def test_the_audit_sink_takes_the_store_url_from_the_secret_in_its_environment(rendered, tmp_path, monkeypatch):
    """The container runs the sink directly, the URL nowhere on its command line (ps and /proc show that to
    anything sharing the node's process view); the sink's entry point reads $KFLOOP_AUDIT_STORE_URL: without the
    Secret the config file's SQLite store, with it the URL exactly, however odd; --store-url still wins."""
    from kfloop.cli.app import build_parser
    from serving.audit import app

    _, container, mounts = _audit_container(rendered)
    assert (container["command"], container["args"]) == (
        ["kfloop"],
        ["audit", "sink", "--config=/etc/kfloop/audit-sink.yaml"],
    )
    (env,) = container["env"]
    assert env["name"] == STORE_URL_ENV
    config_path = tmp_path / "audit-sink.yaml"
    config_path.write_text(yaml.safe_dump(_audit_config_file(rendered, mounts)))
    started = []
    monkeypatch.setattr(app, "run", lambda config: started.append(config) or 0)

    def store_url(*flags: str) -> str:
        """What `kfloop audit sink` runs with the container's args, its config file here."""
        args = [arg.replace("/etc/kfloop/audit-sink.yaml", str(config_path)) for arg in container["args"]]
        assert app.run_from_args(build_parser().parse_args([*args, *flags])) == 0
        return started.pop().store.url

    monkeypatch.delenv(STORE_URL_ENV, raising=False)
    assert store_url().startswith("sqlite:///")
    url = "postgresql://kfloop_audit:p%40ss word$x@db.example:5432/audit?sslmode=require&application=x"
    monkeypatch.setenv(STORE_URL_ENV, url)
    assert store_url() == url
    other = "postgresql://kfloop_audit@other.example:5432/audit"
    assert store_url(f"--store-url={other}") == other


def test_decisions_and_kserve_payloads_ship_to_the_audit_service(rendered):
    """The predictors' spool and the InferenceService's logger name the audit Service (by its name: they run in
    its namespace, whichever that is) and its port."""
    service = one(rendered, "Service", "kfloop-audit-sink")
    (port,) = service["spec"]["ports"]
    expected = ("kfloop-audit-sink", port["port"])
    isvc = one(rendered, "InferenceService", "kfloop-ranker")
    assert isvc["metadata"]["namespace"] == service["metadata"]["namespace"]
    serving_config = next(d for d in rendered if d["metadata"]["name"].startswith("kfloop-serving-config-"))
    spool_url = yaml.safe_load(serving_config["data"]["serving.yaml"])["predictor"]["audit"]["spool"]["sink_url"]
    logger_url = one(rendered, "InferenceService", "kfloop-ranker")["spec"]["predictor"]["logger"]["url"]
    for url in (spool_url, logger_url):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == expected, url
    assert urlsplit(logger_url).path == "/v1/cloudevents"


def test_an_overlay_puts_everything_in_another_namespace(tmp_path):
    """A platform team's `namespace:` overlay of the base moves every object, the Namespace itself included."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "ml-team",
        "resources": [os.path.relpath(REPO / "manifests" / "base", overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    docs = render(overlay)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"ml-team"}
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"] == ["ml-team"]


def test_every_full_address_of_a_kfloop_service_names_the_overlays_namespace(rendered):
    """Inside the namespace, addresses are bare Service names; where a full one is needed (Alertmanager, in its own
    namespace, calling the controller) the overlay's replacement writes its namespace in."""
    (namespace,) = [d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace"]
    ours = {d["metadata"]["name"] for d in rendered if d["kind"] == "Service"}
    text = yaml.safe_dump_all(rendered)
    full = re.findall(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\b", text)
    named = [(service, ns) for service, ns in full if service in ours]
    assert ("kfloop-controller", namespace) in named
    assert {ns for _, ns in named} == {namespace}, named

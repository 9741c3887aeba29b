"""manifests/serving: the InferenceService (predictor + transformer + explainer, Serverless for the canary split)
validates against KServe v0.15.2's CRD; the serving configs load; the local state is seeded from it."""

from __future__ import annotations

import copy
import sys

import jsonschema
import pytest
import yaml

from kfloop.audit.config import STORE_URL_ENV
from kfloop.config import load_config
from kfloop.deploy import read_manifest
from serving.local.stack.config import ServingConfig
from tests.manifests import CRD_DIR, REPO, render, validate

pytestmark = pytest.mark.serving
SERVING = REPO / "manifests" / "serving"
needs_crds = pytest.mark.skipif(not CRD_DIR.is_dir(), reason="needs ../shared/crds beside the clone")


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(SERVING)


def isvc_of(docs: list[dict]) -> dict:
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
    return isvc


@needs_crds
def test_every_object_validates_and_a_bad_field_would_be_caught(rendered):
    for doc in rendered:
        validate(doc)
    broken = copy.deepcopy(isvc_of(rendered))
    broken["spec"]["predictor"]["canaryTrafficPercentage"] = 10
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_the_inference_service_has_the_three_roles_in_serverless_mode(rendered):
    isvc = isvc_of(rendered)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    for role in ("predictor", "transformer", "explainer"):
        container = isvc["spec"][role]["containers"][0]
        assert (container["command"], container["args"][0]) == (["kfloop"], role)
    predictor = isvc["spec"]["predictor"]["containers"][0]
    assert predictor["name"] == "kserve-container"
    assert {e["name"] for e in predictor["env"]} == {"STORAGE_URI", "KFLOOP_VARIANT"}
    assert "--variant=$(KFLOOP_VARIANT)" in predictor["args"] and "--model-dir=/mnt/models" in predictor["args"]
    assert isvc["spec"]["predictor"]["logger"]["url"].endswith("/v1/cloudevents")


def test_the_pods_config_and_the_local_config_load(rendered):
    (config_map,) = [d for d in rendered if d["metadata"]["name"].startswith("kfloop-serving-config-")]
    assert config_map["kind"] == "ConfigMap"  # its name hashed: a change rolls out
    isvc = isvc_of(rendered)
    for role in ("predictor", "transformer", "explainer"):
        (volume,) = [v for v in isvc["spec"][role]["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"], role
    cluster = ServingConfig.model_validate(yaml.safe_load(config_map["data"]["serving.yaml"]))
    assert cluster.predictor.audit.spool.dir.as_posix() == "/var/lib/kfloop/spool"
    # a stopping predictor ships its spool (an emptyDir) within the grace Knative gives it (timeoutSeconds)
    assert 60 <= cluster.predictor.audit.drain_on_stop_s < isvc["spec"]["predictor"].get("timeout", 300)
    assert cluster.transformer.features.store.online_store == "redis"
    local = load_config(ServingConfig, SERVING / "serving.yaml")
    assert local.stack.manifest.as_posix() == "manifests/serving/inferenceservice.yaml"
    assert local.predictor.policy.epsilon == 0.1 and local.predictor.policy.slate_size == 3


def test_the_local_state_is_seeded_from_this_manifest():
    facts = read_manifest(SERVING / "inferenceservice.yaml")
    assert (facts.name, facts.namespace, facts.canary_percent) == ("kfloop-ranker", "kfloop", None)
    assert facts.storage_uri.startswith("s3://mlpipeline/kfloop/registry/")


def test_kfloop_serve_options_override_the_stack_config():
    from kfloop.cli.app import build_parser
    from kfloop.errors import ConfigError
    from serving.local.stack.main import overrides

    args = build_parser().parse_args(["serve", "--predictor-replicas", "3", "--port", "9000"])
    config = load_config(ServingConfig, SERVING / "serving.yaml", overrides(args, {}))
    assert config.stack.predictor_replicas == 3 and config.stack.transformer_port == 9000
    assert config.stack.audit_store_url.startswith("sqlite:///")
    url = "postgresql://kfloop_audit:secret@db.example:5432/audit"
    config = load_config(ServingConfig, SERVING / "serving.yaml", overrides(args, {STORE_URL_ENV: url}))
    assert config.stack.audit_store_url == url
    args = build_parser().parse_args(["serve", "--predictor-replicas", "0"])
    with pytest.raises(ConfigError, match="predictor_replicas"):
        load_config(ServingConfig, SERVING / "serving.yaml", overrides(args, {}))


def test_the_stack_gives_the_audit_sink_its_store_url_in_the_environment_only(tmp_path):
    """The URL may hold a password: it goes to the sink's environment, never its command line (visible to every
    user in ps), and the effective config file the stack writes has the password redacted."""
    from serving.local.stack.supervisor import Stack

    url = "postgresql://kfloop_audit:s3cret@db.example:5432/audit"
    config = load_config(
        ServingConfig, SERVING / "serving.yaml", {"stack.state_dir": str(tmp_path), "stack.audit_store_url": url}
    )
    stack = Stack(config)
    sink = stack.audit_sink().process
    assert sink.env == {STORE_URL_ENV: url}
    assert not any("s3cret" in part for part in sink.command)
    effective = stack.effective_config()
    assert effective.stack.audit_store_url == "postgresql://kfloop_audit:***@db.example:5432/audit"
    assert "s3cret" not in effective.model_dump_json()


def test_the_local_stack_starts_each_role_with_the_kfloop_subcommand_a_container_runs(tmp_path):
    """`kfloop serve` runs `python -m kfloop ROLE ...` per process, the manifests' entry form; each command line
    (with the --host/--port every process gets) parses with kfloop's parser."""
    from kfloop.cli.app import build_parser, command_for
    from serving.local.stack.supervisor import Stack

    config = load_config(ServingConfig, SERVING / "serving.yaml", {"stack.state_dir": str(tmp_path)})
    stack = Stack(config)
    stack.config_path = tmp_path / "serving.effective.yaml"
    managed = [*stack._services().values(), stack._predictor("v1", 0), stack._predictor("v1", 1)]
    started = set()
    for process in [m.process for m in managed]:
        assert process.command[:3] == [sys.executable, "-m", "kfloop"]
        argv = process.command[3:]
        args = build_parser().parse_args(argv)
        assert args._command is command_for(argv)
        started.add(args._command.words)
        if args._command.words != ("audit", "sink"):  # the sink's config is its store URL, in its environment
            assert args.config == str(stack.config_path)
    assert started == {("audit", "sink"), ("explainer",), ("router",), ("transformer",), ("predictor",)}

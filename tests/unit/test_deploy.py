"""The canary state: seeded from the InferenceService manifest, changed by deploy / promote / rollback, checked
against the model registry (unknown versions, unblessed ones, --force recorded in the registry)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfloop.cli.commands import serve as commands
from kfloop.deploy import apply_change, deploy, load_or_seed, promote, read_manifest, read_state, rollback
from kfloop.errors import InvalidInput, NotFound
from kfloop.registry import ModelRegistry, State
from tests.support.controller import register

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "serving" / "inferenceservice.yaml"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture
def versions(registry: ModelRegistry, tmp_path: Path) -> list[str]:
    """Three blessed versions and an unblessed one, oldest first."""
    blessed = [register(registry, tmp_path, n) for n in range(3)]
    return [*blessed, register(registry, tmp_path, 3, blessed=False)]


def manifest_naming(tmp_path: Path, version: str, percent: int | None = None) -> Path:
    doc = yaml.safe_load(MANIFEST.read_text())
    predictor = doc["spec"]["predictor"]
    for env in predictor["containers"][0]["env"]:
        if env["name"] == "STORAGE_URI":
            env["value"] = f"s3://bucket/registry/{version}"
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_manifest_gives_the_inference_service_its_version_and_canary_share(tmp_path, versions):
    facts = read_manifest(manifest_naming(tmp_path, versions[1], percent=20))
    assert (facts.name, facts.namespace, facts.version, facts.canary_percent) == (
        "kfloop-ranker",
        "kfloop",
        versions[1],
        20,
    )
    committed = read_manifest(MANIFEST)
    assert committed.name == "kfloop-ranker" and committed.canary_percent is None


def test_the_state_is_seeded_from_the_manifest_once(tmp_path, registry, versions):
    state_dir = tmp_path / "state"
    state = load_or_seed(state_dir, manifest_naming(tmp_path, versions[1]), registry)
    assert state.stable.version == versions[1] and state.canary is None
    assert state.history[0].action == "seed" and state.history[0].by == "manifest"
    # a later seed does not overwrite: the state file rules once it exists
    assert load_or_seed(state_dir, manifest_naming(tmp_path, versions[0]), registry).stable.version == versions[1]


def test_a_manifest_naming_no_registered_version_seeds_the_latest_deployable_one(tmp_path, registry, versions):
    state = load_or_seed(tmp_path / "state", MANIFEST, registry)
    assert state.stable.version == versions[2]  # versions[3] is unblessed
    assert "manifest names v20260101T000000Z-00000000" in state.history[0].note
    empty = load_or_seed(tmp_path / "empty-state", MANIFEST, ModelRegistry(tmp_path / "no-registry"))
    assert empty.stable is None


def seeded(tmp_path, registry, versions):
    return load_or_seed(tmp_path / "state", manifest_naming(tmp_path, versions[0]), registry)


def test_deploy_makes_a_canary_with_its_share_and_promote_makes_it_stable(tmp_path, registry, versions):
    state = seeded(tmp_path, registry, versions)
    change = deploy(state, registry, versions[1], 10, operator="ana")
    assert change.after.canary.version == versions[1] and change.after.canary.percent == 10
    assert change.after.stable.version == versions[0]
    assert "canary at 10%" in change.summary
    promoted = promote(change.after, operator="ana").after
    assert promoted.stable.version == versions[1] and promoted.canary is None
    assert promoted.previous_stable == versions[0]
    assert [h.action for h in promoted.history] == ["seed", "deploy", "promote"]


def test_rollback_drops_a_canary_or_returns_to_the_previous_stable_version(tmp_path, registry, versions):
    state = seeded(tmp_path, registry, versions)
    with_canary = deploy(state, registry, versions[1], 50, operator="ana").after
    dropped = rollback(with_canary, operator="ana").after
    assert dropped.canary is None and dropped.stable.version == versions[0]
    promoted = promote(deploy(dropped, registry, versions[2], 5, operator="ana").after, operator="ana").after
    back = rollback(promoted, operator="ana").after
    assert back.stable.version == versions[0] and back.previous_stable is None
    with pytest.raises(InvalidInput, match="nothing to roll back"):
        rollback(back, operator="ana")


def test_an_unknown_version_is_a_clear_error_naming_the_deployable_ones(tmp_path, registry, versions):
    state = seeded(tmp_path, registry, versions)
    with pytest.raises(NotFound) as caught:
        deploy(state, registry, "v20991231T000000Z-deadbeef", 10, operator="ana")
    assert "not in the registry" in caught.value.message and versions[2] in caught.value.message
    with pytest.raises(NotFound):
        deploy(state, registry, "latest", 10, operator="ana")


def test_an_unblessed_version_needs_force_which_the_registry_records(tmp_path, registry, versions):
    state = seeded(tmp_path, registry, versions)
    with pytest.raises(InvalidInput, match="unblessed, not deployable; --force"):
        deploy(state, registry, versions[3], 10, operator="ana")
    with pytest.raises(InvalidInput, match="--reason: required"):
        deploy(state, registry, versions[3], 10, force=True, operator="ana", reason="  ")
    assert registry.status(versions[3]).state is not State.FORCED  # refused: nothing recorded
    change = deploy(state, registry, versions[3], 10, force=True, operator="ana", reason="hotfix test")
    assert change.after.canary.version == versions[3]
    status = registry.status(versions[3])
    assert status.state is State.FORCED and status.history[-1].by == "ana"
    assert status.history[-1].reason == "hotfix test"
    assert "forced" in change.after.history[-1].note


def test_a_running_canary_is_replaced_only_with_force_and_stable_is_not_its_own_canary(tmp_path, registry, versions):
    state = deploy(seeded(tmp_path, registry, versions), registry, versions[1], 10, operator="ana").after
    with pytest.raises(InvalidInput, match=r"canary .* is running"):
        deploy(state, registry, versions[2], 10, operator="ana")
    replaced = deploy(state, registry, versions[2], 30, force=True, operator="ana").after
    assert replaced.canary.version == versions[2] and "replaced canary" in replaced.history[-1].note
    with pytest.raises(InvalidInput, match="already the stable"):
        deploy(state, registry, versions[0], 10, operator="ana")
    with pytest.raises(InvalidInput, match="percentage"):
        deploy(state, registry, versions[1], 101, operator="ana")


def test_with_no_stable_version_a_deploy_makes_it_stable(tmp_path, registry):
    state = load_or_seed(tmp_path / "state", MANIFEST, registry)
    assert state.stable is None
    version = register(registry, tmp_path, 0)
    change = deploy(state, registry, version, 10, operator="ana")
    assert change.after.stable.version == version and change.after.canary is None


def test_apply_change_saves_only_when_the_step_before_writing_succeeds(tmp_path, registry, versions):
    manifest = manifest_naming(tmp_path, versions[0])
    state_dir = tmp_path / "state"

    def failing(change):
        raise InvalidInput("the cluster said no")

    with pytest.raises(InvalidInput):
        apply_change(
            state_dir, manifest, registry, lambda s: deploy(s, registry, versions[1], 10, operator="a"), failing
        )
    assert read_state(state_dir).canary is None
    apply_change(state_dir, manifest, registry, lambda s: deploy(s, registry, versions[1], 10, operator="a"))
    assert read_state(state_dir).canary.version == versions[1]


def cli_args(tmp_path: Path, manifest: Path, registry: ModelRegistry, **extra) -> argparse.Namespace:
    config = tmp_path / "serving.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "predictor": {"registry_uri": registry.uri},
                "stack": {"state_dir": str(tmp_path / "state"), "manifest": str(manifest)},
            }
        )
    )
    return deploy_command_args(config, operator="ana", **extra)


def deploy_command_args(config: Path, *, operator: str, **extra: Any) -> argparse.Namespace:
    """What `kfloop deploy | promote | rollback | serving status` parse to, locally, with `extra` on top."""
    base = {
        "config": str(config),
        "state_dir": None,
        "registry_uri": None,
        "operator": operator,
        "cluster": False,
        "kubeconfig": None,
        "context": None,
        "namespace": None,
        "force": False,
        "reason": None,
        "canary": None,
    }
    return argparse.Namespace(**(base | extra))


def test_the_commands_change_the_state_file(tmp_path, registry, versions, capsys):
    manifest = manifest_naming(tmp_path, versions[0])
    assert commands.deploy(cli_args(tmp_path, manifest, registry, version=versions[1], canary=25)) == 0
    assert "canary at 25%" in capsys.readouterr().out
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["canary"]["version"] == versions[1] and state["canary"]["percent"] == 25
    assert commands.promote(cli_args(tmp_path, manifest, registry)) == 0
    assert read_state(tmp_path / "state").stable.version == versions[1]
    assert commands.rollback(cli_args(tmp_path, manifest, registry)) == 0
    assert read_state(tmp_path / "state").stable.version == versions[0]
    capsys.readouterr()
    assert commands.status(cli_args(tmp_path, manifest, registry)) == 0
    assert json.loads(capsys.readouterr().out)["stable"]["version"] == versions[0]


def test_a_refused_command_exits_2_with_the_reason(tmp_path, registry, versions, capsys):
    manifest = manifest_naming(tmp_path, versions[0])
    assert commands.deploy(cli_args(tmp_path, manifest, registry, version="v20991231T000000Z-deadbeef", canary=10)) == 2
    assert "is not in the registry" in capsys.readouterr().err
    assert commands.deploy(cli_args(tmp_path, manifest, registry, version=versions[1])) == 2
    assert "--canary P" in capsys.readouterr().err
    assert commands.promote(cli_args(tmp_path, manifest, registry)) == 2
    assert "no canary to promote" in capsys.readouterr().err


def test_a_rollback_keeps_its_reason_and_a_canary_only_rollback_never_touches_stable(tmp_path, registry, versions):
    from kfloop.deploy import NoCanary

    manifest = manifest_naming(tmp_path, versions[0])
    assert commands.deploy(cli_args(tmp_path, manifest, registry, version=versions[1], canary=25)) == 0
    assert commands.rollback(cli_args(tmp_path, manifest, registry, reason="errors on the canary")) == 0
    last = read_state(tmp_path / "state").history[-1]
    assert (last.action, last.version, last.percent, last.note) == ("rollback", versions[1], 0, "errors on the canary")
    state = read_state(tmp_path / "state")
    with pytest.raises(NoCanary):
        rollback(state, operator="controller", canary_only=True)

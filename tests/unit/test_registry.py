"""The model registry: plain files, idempotent registration, the deployment gate, operator forcing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kfloop.errors import InvalidInput, NotFound
from kfloop.registry import Blessing, Candidate, ModelRegistry, State, is_version_id

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def candidate(*, blessed: bool = True, data_version: str = "d" * 64, epochs: int = 2, low: bool = False) -> Candidate:
    return Candidate(
        data_version=data_version,
        schema_version="s" * 64,
        code_version="0.1.0+abc",
        parameters={"epochs": epochs},
        blessing=Blessing(blessed=blessed, low_evidence=low, reasons=["dr rule: pass"], reference="logging-policy"),
        data={"train_rows": 10},
        metrics={"overall": {"auc": 0.6}},
        ope={"candidate": {"dr": {"value": 0.01}}},
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def test_a_blessed_version_is_stored_with_its_card_and_is_deployable(tmp_path: Path, model_dir: Path):
    registry = ModelRegistry(tmp_path / "registry")
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"features": {}}')
    result = registry.register(candidate(), model_dir=model_dir, files={"baseline.json": baseline}, created_at=T0)
    assert result.created and is_version_id(result.version)
    assert result.version.startswith("v20261123T120000Z-")
    folder = tmp_path / "registry" / result.version
    assert (folder / "model" / "saved_model.pb").read_bytes() == b"graph"
    assert (folder / "model" / "variables" / "variables.index").read_bytes() == b"index"
    assert json.loads((folder / "baseline.json").read_text()) == {"features": {}}
    card = registry.card(result.version)
    assert card.data_version == "d" * 64 and card.parameters == {"epochs": 2}
    assert card.artifacts == {"model": "model", "baseline.json": "baseline.json"}
    assert registry.status(result.version).state is State.BLESSED
    assert registry.deployable() == [result.version] == [registry.latest_deployable()]
    assert registry.artifact_uri(result.version) == str(folder / "model")


def test_registering_the_same_inputs_again_returns_the_existing_version(tmp_path: Path, model_dir: Path):
    registry = ModelRegistry(tmp_path / "registry")
    first = registry.register(candidate(), model_dir=model_dir, created_at=T0)
    again = registry.register(candidate(), model_dir=model_dir, created_at=T0 + timedelta(hours=1))
    assert (again.version, again.created) == (first.version, False)
    assert registry.versions() == [first.version]


def test_different_inputs_get_distinct_versions_sorted_by_time(tmp_path: Path, model_dir: Path):
    registry = ModelRegistry(tmp_path / "registry")
    later = registry.register(candidate(epochs=3), model_dir=model_dir, created_at=T0 + timedelta(seconds=1))
    same_second_a = registry.register(candidate(epochs=1), model_dir=model_dir, created_at=T0)
    same_second_b = registry.register(candidate(data_version="e" * 64), model_dir=model_dir, created_at=T0)
    assert len({later.version, same_second_a.version, same_second_b.version}) == 3
    assert registry.versions()[-1] == later.version


def test_an_unblessed_version_is_kept_but_not_deployable_until_an_operator_forces_it(tmp_path: Path, model_dir: Path):
    registry = ModelRegistry(tmp_path / "registry")
    result = registry.register(candidate(blessed=False), model_dir=model_dir, created_at=T0)
    assert result.status.state is State.UNBLESSED
    assert registry.versions() == [result.version] and registry.deployable() == []
    with pytest.raises(InvalidInput):
        registry.force(result.version, operator="alice", reason=" ")
    status = registry.force(result.version, operator="alice", reason="hotfix for a broken ranker")
    assert status.state is State.FORCED
    assert [(c.state, c.by) for c in status.history] == [(State.UNBLESSED, "pipeline"), (State.FORCED, "alice")]
    assert registry.status(result.version).history[-1].reason == "hotfix for a broken ranker"
    assert registry.deployable() == [result.version]
    index = json.loads((tmp_path / "registry" / "index.json").read_text())
    assert index["versions"][0]["state"] == "forced"


def test_a_half_written_version_is_invisible(tmp_path: Path, model_dir: Path):
    registry = ModelRegistry(tmp_path / "registry")
    result = registry.register(candidate(), model_dir=model_dir, created_at=T0)
    (tmp_path / "registry" / "v20261124T000000Z-deadbeef" / "model").mkdir(parents=True)  # no card: crashed
    (tmp_path / "registry" / ".staging-x").mkdir()
    assert registry.versions() == [result.version]
    with pytest.raises(NotFound):
        registry.card("v20261124T000000Z-deadbeef")
    with pytest.raises(NotFound):
        registry.status("../etc")


def test_a_file_uri_reads_the_same_registry(tmp_path: Path, model_dir: Path):
    written = ModelRegistry(tmp_path / "registry").register(candidate(low=True), model_dir=model_dir, created_at=T0)
    reader = ModelRegistry(f"file://{tmp_path / 'registry'}")
    assert reader.versions() == [written.version]
    assert reader.card(written.version).blessing.low_evidence

"""`kfloop models list | show | force` handlers print the registry and act on it."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kfloop.cli.commands.models import force_model, list_models, show_model
from kfloop.errors import NotFound
from kfloop.registry import Blessing, Candidate, ModelRegistry


def registered(tmp_path: Path, *, blessed: bool) -> tuple[ModelRegistry, str]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"x")
    registry = ModelRegistry(tmp_path / "registry")
    result = registry.register(
        Candidate(
            data_version="a" * 64,
            schema_version="b" * 64,
            code_version="0.1.0",
            parameters={"epochs": 1},
            blessing=Blessing(blessed=blessed, low_evidence=True, reasons=["too few clicks"]),
            data={},
            metrics={},
            ope={},
        ),
        model_dir=model,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return registry, result.version


def args(tmp_path: Path, **extra) -> argparse.Namespace:
    return argparse.Namespace(config=None, registry=str(tmp_path / "registry"), **extra)


def test_list_prints_each_version_with_its_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _, version = registered(tmp_path, blessed=False)
    assert list_models(args(tmp_path, json=False)) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(version))
    assert "unblessed" in line and " no " in line and "low-evidence" in line
    assert list_models(args(tmp_path, json=True)) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed["versions"]] == [version]


def test_show_prints_the_card_and_force_records_the_operator(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    registry, version = registered(tmp_path, blessed=False)
    assert show_model(args(tmp_path, version=version)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["card"]["blessing"]["reasons"] == ["too few clicks"]
    assert shown["status"]["state"] == "unblessed"
    assert force_model(args(tmp_path, version=version, operator="bob", reason="needed for the demo")) == 0
    assert registry.status(version).history[-1].by == "bob"
    with pytest.raises(NotFound):
        show_model(args(tmp_path, version="v20000101T000000Z-00000000"))


def test_an_empty_registry_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert list_models(args(tmp_path, json=False)) == 0
    assert "no versions" in capsys.readouterr().out

"""Push: the verdict gates deployment, forcing is recorded, the same inputs register once, bad data never."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.push.config import PushTask
from components.push.logic import push as push_logic
from components.push.logic import training_parameters
from kfloop.errors import InvalidInput
from kfloop.model_contract import EXPLAINER_DIR, MODEL_DIR
from kfloop.registry import ModelRegistry, State
from pipelines.config import PipelineConfig


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def artifacts(root: Path, *, blessed: bool, anomalies: list | None = None) -> dict[str, Path]:
    examples, statistics, model, evaluation = (root / n for n in ("examples", "statistics", "model", "evaluation"))
    write(examples / "span.json", {"data_version": "d" * 64, "window_start": "a", "window_end": "b", "splits": {}})
    write(statistics / "validation.json", {"schema_version": "s" * 64, "anomalies": anomalies or []})
    write(root / "baseline", {"format": "kfloop-baseline-v1", "features": {}})
    (model / MODEL_DIR).mkdir(parents=True)
    (model / MODEL_DIR / "saved_model.pb").write_bytes(b"model")
    (model / EXPLAINER_DIR).mkdir()
    (model / EXPLAINER_DIR / "explainer.json").write_text("{}")
    write(model / "train_info.json", {"examples": 10})
    blessing = {"blessed": blessed, "low_evidence": not blessed, "reasons": ["rule"], "reference": "logging-policy"}
    write(evaluation / "evaluation.json", {"metrics": {"slices": {}}, "ope": {"dr": {}}, "blessing": blessing})
    return {
        "examples": examples,
        "statistics": statistics,
        "baseline": root / "baseline",
        "model_dir": model,
        "evaluation_dir": evaluation,
    }


def config(tmp_path: Path) -> PushTask:
    """The push task's input as the pipeline cuts it from its config."""
    return PipelineConfig.model_validate({"registry": {"uri": str(tmp_path / "registry")}}).tasks().push


def push(config: PushTask, **kwargs) -> dict:
    """Push, recording the training configuration the other tasks were given by default."""
    tasks = PipelineConfig().tasks()
    parameters = training_parameters(tasks.examplegen, tasks.transform, tasks.train, tasks.evaluate)
    return push_logic(config, parameters=parameters, **kwargs)


def test_a_blessed_version_is_registered_with_its_card_and_files(tmp_path: Path):
    result = push(config(tmp_path), **artifacts(tmp_path, blessed=True), code_version="0.1.0+abc")
    assert result["created"] and result["deployable"] and result["state"] == "blessed"
    registry = ModelRegistry(tmp_path / "registry")
    card = registry.card(result["version"])
    assert (card.data_version, card.schema_version, card.code_version) == ("d" * 64, "s" * 64, "0.1.0+abc")
    assert card.parameters["train"]["implicit_weight"] == 3.0 and "registry" not in card.parameters
    folder = tmp_path / "registry" / result["version"]
    for name in ("model/saved_model.pb", "explainer/explainer.json", "baseline.json", "statistics/validation.json"):
        assert (folder / name).is_file(), name
    again = push(config(tmp_path), **artifacts(tmp_path / "again", blessed=True), code_version="0.1.0+abc")
    assert (again["version"], again["created"]) == (result["version"], False)


def test_an_unblessed_version_is_kept_but_only_offered_when_an_operator_forces_it(tmp_path: Path):
    paths = artifacts(tmp_path, blessed=False)
    kept = push(config(tmp_path), **paths, code_version="1")
    assert kept["state"] == "unblessed" and not kept["deployable"]
    with pytest.raises(InvalidInput):
        push(config(tmp_path), **paths, code_version="1", force=True, operator="ann")
    forced = push(config(tmp_path), **paths, code_version="1", force=True, operator="ann", force_reason="incident 42")
    assert forced["version"] == kept["version"] and forced["state"] == "forced"
    history = ModelRegistry(tmp_path / "registry").status(kept["version"]).history
    assert (history[-1].state, history[-1].by, history[-1].reason) == (State.FORCED, "ann", "incident 42")


def test_data_that_broke_the_schema_is_never_registered(tmp_path: Path):
    anomalies = [{"feature": "dwell_ms", "short": "Out-of-range values", "description": "-5"}]
    with pytest.raises(InvalidInput):
        push(config(tmp_path), **artifacts(tmp_path, blessed=True, anomalies=anomalies), code_version="1")
    assert ModelRegistry(tmp_path / "registry").versions() == []

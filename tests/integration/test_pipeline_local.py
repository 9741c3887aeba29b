"""The whole training pipeline under kfp.local on the OBD sample (small profile): it registers a version
with its card, a second run compares against the first, and a corrupted span stops at validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kfloop.events.record import records_to_table
from kfloop.registry import ModelRegistry, State
from pipelines.config import PipelineConfig
from pipelines.runner import PipelineFailed, run_local
from tests.support.pipeline import import_obd_sample
from tests.support.pipeline import small_config as small_pipeline_config

pytestmark = [pytest.mark.pipeline, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def obd_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("obd-log")
    import_obd_sample(root / "events", root / "wal")
    return root


def small_config(log_root: Path, work: Path, **overrides: Any) -> PipelineConfig:
    return small_pipeline_config(
        events=log_root / "events",
        wal=log_root / "wal",
        feast=work / "feast",
        registry=work / "registry",
        pipeline_root=work / "pipeline-root",
        **overrides,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def first_run(obd_log: Path, work: Path) -> dict[str, Any]:
    config = small_config(obd_log, work, **{"evaluate.blessing.on_low_evidence": "bless_flagged"})
    return run_local(config).pushed


@pytest.fixture(scope="module")
def second_run(obd_log: Path, work: Path, first_run: dict[str, Any]) -> dict[str, Any]:
    config = small_config(obd_log, work, **{"train.seed": 43})  # new parameters: a new version
    return run_local(config).pushed


def test_a_run_registers_a_version_with_its_card(work: Path, first_run: dict[str, Any]):
    registry = ModelRegistry(work / "registry")
    version = first_run["version"]
    assert first_run["created"] and registry.versions() == [version]
    card = registry.card(version)
    assert len(card.data_version) == 64 and len(card.schema_version) == 64 and "+" in card.code_version
    assert card.parameters["train"]["epochs"] == 2 and card.parameters["window"]["max_requests"] == 3000
    assert card.data["splits"]["train"]["examples"] > card.data["splits"]["eval"]["examples"] > 0
    assert "overall" in card.metrics["slices"] and {"ips", "snips", "dr"} <= set(card.ope)
    assert card.ope["reference"] == "logging-policy" == card.blessing.reference
    # The OBD sample has a few clicks per window: the verdict says the evidence is thin, and this run's
    # config blesses such a version flagged rather than blocking it.
    assert card.blessing.blessed and card.blessing.low_evidence
    assert registry.status(version).state is State.BLESSED and registry.deployable() == [version]
    assert card.pipeline_run, "the run that produced it is recorded"
    folder = work / "registry" / version
    for name in ("model/saved_model.pb", "explainer/saved_model.pb", "explainer/explainer.json", "baseline.json"):
        assert (folder / name).is_file(), name


def test_a_second_run_is_compared_against_the_first(work: Path, first_run: dict[str, Any], second_run: dict[str, Any]):
    registry = ModelRegistry(work / "registry")
    assert second_run["version"] != first_run["version"]
    assert registry.versions() == [first_run["version"], second_run["version"]]
    card = registry.card(second_run["version"])
    assert card.ope["reference"] == f"production:{first_run['version']}" == card.blessing.reference
    assert "production" in card.metrics["slices"]["overall"]["models"]
    assert any(reason.startswith("slice AUC") for reason in card.blessing.reasons)
    validation = json.loads((work / "registry" / second_run["version"] / "statistics" / "validation.json").read_text())
    assert validation["drift"] and first_run["version"] in validation["previous_span"], "drift vs the first run's span"
    # The default config blocks a candidate the data cannot judge: kept, not deployable.
    assert not card.blessing.blessed and card.blessing.low_evidence
    assert registry.deployable() == [first_run["version"]]


def corrupt_events(log_root: Path, target: Path) -> Path:
    """A copy of the log plus a segment no collector would accept: an impression at position 0 with a
    propensity above 1, and a negative dwell on it (written straight to Parquet, as a broken backfill would)."""
    shutil.copytree(log_root, target)
    common = {
        "schema_version": "1",
        "user_id": "obd-u-0000000000000000",
        "item_id": "3",
        "request_id": "bad:req1",
        "received_at": None,
        "source": "backfill",
        "consent_personalization": True,
        "consent_analytics": False,
        "signal": "implicit",
    }
    from datetime import UTC, datetime

    at = datetime(2019, 11, 30, 23, 59, 59, tzinfo=UTC)
    records = [
        {
            **common,
            "event_id": "bad:1",
            "type": "impression",
            "ts": at,
            "position": 0,
            "policy": "bts",
            "propensity": 1.5,
        },
        {**common, "event_id": "bad:2", "type": "dwell", "ts": at, "dwell_ms": -5},
    ]
    for record in records:
        record["received_at"] = at
    folder = target / "events" / "events" / "date=2019-12-01"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(records_to_table(records), folder / "backfill-0000000001.parquet")
    return target


def test_a_corrupted_span_stops_at_validation_and_nothing_is_registered(obd_log: Path, tmp_path: Path):
    log_root = corrupt_events(obd_log, tmp_path / "log")
    # The features side added a 2-hour window the schema does not know: new columns in every example.
    windows = [
        {"label": "1h", "seconds": 3600},
        {"label": "2h", "seconds": 7200},
        {"label": "1d", "seconds": 86400},
        {"label": "7d", "seconds": 604800},
    ]
    config = small_config(log_root, tmp_path, **{"features.aggregation.windows": windows})
    with pytest.raises(PipelineFailed) as failure:
        run_local(config)
    reports = list((tmp_path / "registry" / "rejected").glob("*/anomalies.md"))
    assert len(reports) == 1 and str(reports[0]) in failure.value.message
    report = reports[0].read_text()
    assert report.startswith("# Data validation: FAILED")
    assert "| `u_impressions_2h` | New column |" in report
    assert "| `position` | Out-of-range values |" in report
    assert "| `propensity` | Out-of-range values |" in report
    assert "| `dwell_ms` | Out-of-range values |" in report
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.versions() == [] and registry.deployable() == []
    assert not list((tmp_path / "pipeline-root").glob("*/transform")), "nothing ran after validation"

"""Validate: the committed schema as a contract, a readable anomaly report, drift and skew, serving's baseline."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from components import examples_io
from components.contract import DEFAULT_SCHEMA
from components.examplegen.logic import generate
from components.validate.config import ValidationConfig
from components.validate.logic import (
    STATS_FILES,
    load_schema,
    propose_schema,
    reject_span,
    statistics,
    validate,
)
from kfloop.data import fetch_obd, import_obd
from kfloop.eventlog import EventLog, EventLogConfig
from kfloop.registry import ModelRegistry
from pipelines.config import PipelineConfig

pytestmark = pytest.mark.pipeline

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    """The OBD `random` log in a fresh event log, and a config reading its newest 1,500 requests."""
    fetch_obd(DATA_DIR)
    root = tmp_path_factory.mktemp("validate")
    log = EventLogConfig(wal_dir=root / "wal", log_uri=str(root / "events"))
    with EventLog(log, writer_id="obd") as writer:
        import_obd(DATA_DIR, writer, logs=("random",), progress=lambda _: None)
    config = PipelineConfig.model_validate(
        {
            "features": {
                "event_log": log.model_dump(mode="json"),
                "store": {"repo_dir": str(root / "feast"), "obd_data_dir": str(DATA_DIR)},
            },
            "registry": {"uri": str(root / "registry")},
            "window": {"max_requests": 1500},
        }
    )
    return config


@pytest.fixture(scope="module")
def span(config: PipelineConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small examples artifact."""
    folder = tmp_path_factory.mktemp("span") / "examples"
    generate(config.examplegen_task(), folder, now=datetime.now(UTC))
    return folder


def corrupted_copy(span: Path, target: Path) -> Path:
    """The span with an unknown column, an out-of-range position and a negative dwell in its eval split."""
    shutil.copytree(span, target)
    frame = examples_io.read_split(target, "eval")
    frame["coupon_code"] = "SUMMER"
    frame.loc[0, "position"] = 0
    frame.loc[1, "dwell_ms"] = -5
    shutil.rmtree(examples_io.split_dir(target, "eval"))
    examples_io.write_split(target, "eval", frame)
    return target


def test_a_clean_span_passes_and_yields_statistics_skew_and_a_plain_json_baseline(span: Path, tmp_path: Path):
    result, report, baseline = validate(
        span, config=ValidationConfig(), schema_file=DEFAULT_SCHEMA, previous_stats=None, out_dir=tmp_path
    )
    assert result.anomalies == [] and "# Data validation: passed" in report
    assert all((tmp_path / name).is_file() for name in STATS_FILES.values())
    assert result.drift == [] and result.skew, "no previous span: no drift, but train vs eval skew is measured"
    assert json.loads((tmp_path / "validation.json").read_text())["schema_version"] == result.schema_version
    json.dumps(baseline)  # plain JSON, nothing TFDV-specific
    numeric = baseline["features"]["item_feature_0"]
    assert numeric["kind"] == "numeric" and sum(numeric["fractions"]) == pytest.approx(1.0)
    assert len(numeric["edges"]) == len(numeric["fractions"]) + 1
    categorical = baseline["features"]["item_id"]
    assert categorical["kind"] == "categorical" and sum(categorical["fractions"].values()) == pytest.approx(1.0)
    assert "label" not in baseline["features"] and "request_id" not in baseline["features"]


def test_drift_against_the_previous_span_is_measured_and_flagged_over_the_threshold(span: Path, tmp_path: Path):
    previous = tmp_path / "previous.pb"
    shifted = examples_io.read_split(span, "train").assign(user_feature_0="a-new-segment")
    previous.write_bytes(statistics(shifted).SerializeToString())
    result, report, _ = validate(
        span,
        config=ValidationConfig(drift_linf=0.2),
        schema_file=DEFAULT_SCHEMA,
        previous_stats=previous,
        out_dir=tmp_path / "s",
    )
    drift = {m["feature"]: m for m in result.drift}
    assert drift["user_feature_0"]["flagged"] and drift["user_feature_0"]["value"] == pytest.approx(1.0)
    assert not drift["item_id"]["flagged"]
    assert "Drift against the previous span" in report and "**yes**" in report


def test_a_corrupted_span_is_reported_anomaly_by_anomaly(span: Path, tmp_path: Path):
    bad = corrupted_copy(span, tmp_path / "bad")
    result, report, _ = validate(
        bad, config=ValidationConfig(), schema_file=DEFAULT_SCHEMA, previous_stats=None, out_dir=tmp_path / "s"
    )
    found = {(a["feature"], a["short"]) for a in result.anomalies}
    assert ("coupon_code", "New column") in found
    assert ("position", "Out-of-range values") in found
    assert ("dwell_ms", "Out-of-range values") in found
    assert report.startswith("# Data validation: FAILED")
    for feature in ("coupon_code", "position", "dwell_ms"):
        assert f"| `{feature}` |" in report
    error = reject_span(bad, result, report, str(tmp_path / "registry"))
    assert "coupon_code: New column" in error.message and error.http_status == 422
    kept = error.message.split("report kept at ")[1].split(")")[0]
    assert Path(kept).read_text() == report and ModelRegistry(tmp_path / "registry").versions() == []


def test_a_schema_proposal_keeps_the_contracts_rules():
    frame = pd.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "item_id": ["1", "2"],
            "signal": ["implicit", "implicit"],
            "label": [0, 1],
            "position": [1, 3],
            "dwell_ms": pd.array([None, 10], dtype="Int64"),
            "u_ctr_1h": [0.1, 0.2],
            "u_clicks_1h": [0, 2],
        }
    )
    schema = propose_schema(statistics(frame))
    by_name = {f.name: f for f in schema.feature}
    assert not by_name["item_id"].HasField("int_domain"), "ids are strings, new values allowed"
    assert (by_name["position"].int_domain.min, by_name["position"].int_domain.max) == (1, 100)
    assert by_name["dwell_ms"].int_domain.min == 0 and by_name["dwell_ms"].presence.min_fraction == 0
    assert (by_name["u_ctr_1h"].float_domain.min, by_name["u_ctr_1h"].float_domain.max) == (0.0, 1.0)
    assert by_name["u_clicks_1h"].int_domain.min == 0
    assert list(next(d for d in schema.string_domain if d.name == "signal").value) == ["implicit", "explicit"]


def test_the_committed_schema_loads_and_covers_every_feature_of_the_training_service():
    from kfloop.features.names import DEFAULT_FEATURES

    names = {f.name for f in load_schema(DEFAULT_SCHEMA).feature}
    assert set(DEFAULT_FEATURES.all_features) <= names


def test_propose_schema_writes_a_proposal_and_leaves_the_contract_alone(config: PipelineConfig, tmp_path: Path):
    from kfloop.features.config import FeaturesConfig
    from pipelines.schema_proposal import propose

    before = DEFAULT_SCHEMA.read_text()
    wider = FeaturesConfig.model_validate(
        {
            **config.features.model_dump(mode="json"),
            "store": {**config.features.store.model_dump(mode="json"), "repo_dir": str(tmp_path / "feast")},
            "aggregation": {"windows": [{"label": "1h", "seconds": 3600}, {"label": "7d", "seconds": 604800}]},
        }
    )
    changed = config.model_copy(update={"features": wider})
    proposal, diff = propose(changed, tmp_path / "schema.proposed.pbtxt")
    assert proposal.is_file() and DEFAULT_SCHEMA.read_text() == before
    assert '-  name: "u_impressions_1d"' in diff, "the proposal drops the features of the removed window"
    assert load_schema(proposal).feature

"""The demo's generated configs: its controller walks experiments sized for the demo's traffic and reads the demo's
own joiner and router (their ports moved), and its pipeline blesses low-evidence candidates flagged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfloop.cli.demo.settings import FAST, DemoConfig
from kfloop.cli.demo.setup import SLICE_MIN_POSITIVES, TRAIN_EPOCHS, DemoFiles
from monitoring.controller.config import ControllerConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path: Path) -> DemoFiles:
    config = DemoConfig(**FAST, state_dir=tmp_path / "state", report_dir=tmp_path / "report")
    files = DemoFiles(config, REPO)
    files.write()
    return files


def test_the_controller_walks_the_demos_stages_reading_the_demos_joiner_and_router(files: DemoFiles):
    system = yaml.safe_load(files.system.read_text())
    parts = {p["name"]: p for p in system["parts"]}
    assert parts["controller"]["config_file"] == str(files.controller)
    experiment = ControllerConfig.model_validate(yaml.safe_load(files.controller.read_text())).experiment
    assert experiment.enabled and not experiment.approval_before_full
    assert experiment.counts_url == f"http://127.0.0.1:{parts['joiner']['port']}/metrics"
    router = parts["serving"]["config_overrides"]["stack.router_port"]
    assert experiment.mirror_counts_url == f"http://127.0.0.1:{router}/metrics" and router != 8086
    assert [(s.name, s.mode, s.percent) for s in experiment.stages] == [
        ("shadow", "shadow", 0),
        ("canary-50", "canary", 50),
    ]
    test = experiment.stages[1].test
    assert test is not None and test.margin == files.config.test_margin and test.on_max_sample == "rollback"


def test_the_pipeline_blesses_low_evidence_flagged_and_measures_slices_with_enough_clicks(files: DemoFiles):
    pipeline = yaml.safe_load(files.pipeline.read_text())
    evaluate = pipeline["evaluate"]
    assert evaluate["blessing"] == {"on_low_evidence": "bless_flagged"}
    assert evaluate["min_slice_positives"] == SLICE_MIN_POSITIVES
    assert pipeline["train"] == {"epochs": TRAIN_EPOCHS, "hidden_units": [16]}  # the small profile's model, trained on


def test_the_loop_acts_on_the_reward_and_the_latency_limit_suits_one_machine(files: DemoFiles):
    from kfloop.config import load_config
    from serving.local.stack.config import ServingConfig

    parts = {p["name"]: p for p in yaml.safe_load(files.system.read_text())["parts"]}
    serving = parts["serving"]
    config = load_config(ServingConfig, REPO / serving["config_file"], serving["config_overrides"])
    assert not config.predictor.drift.enabled  # the simulated users are not v1's training population

    prometheus = yaml.safe_load(Path(parts["prometheus"]["config_file"]).read_text())
    assert prometheus["rule_files"] == [str(files.rules)]
    assert (
        prometheus["alerting"]
        == yaml.safe_load((REPO / "monitoring/prometheus/prometheus.local.yaml").read_text())["alerting"]
    )  # placeholders kept for the supervisor
    rules = alerts(files.rules)
    assert rules["CanaryLatencyHigh"]["expr"].endswith("> 2")
    local = alerts(REPO / "monitoring/generated/rules.local.yaml")
    assert rules.keys() == local.keys()
    assert {k: v for k, v in rules.items() if k != "CanaryLatencyHigh"} == {
        k: v for k, v in local.items() if k != "CanaryLatencyHigh"
    }


def alerts(path: Path) -> dict[str, dict]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}

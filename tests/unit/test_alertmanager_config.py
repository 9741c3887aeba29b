"""The configurations `kfloop up` gives Alertmanager and Prometheus (monitoring/alertmanager/alertmanager.yaml and
monitoring/prometheus/prometheus.local.yaml, their placeholders filled in from manifests/local/system.yaml): amtool
and promtool accept them; every alert goes to the controller's webhook with the controller's own token file,
grouped per alert, variant and model version, at once; a canary's error alert silences its latency alert;
Prometheus scrapes the supervisor's target files every second and alerts the Alertmanager of the same system."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfloop.config import load_config
from monitoring.controller.config import ControllerConfig
from serving.local.system.config import SystemConfig, SystemPaths, effective_config, load_system_config
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.serving


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the system file's paths are relative to the repo root, as `kfloop up` runs


def rendered(system: SystemConfig, name: str) -> Path:
    """The part's config file as the supervisor writes it for the part."""
    part = next(p for p in system.parts if p.name == name)
    path = effective_config(part, SystemPaths(system.state_dir), system.ports())
    assert path is not None
    return path


def controller_config(system: SystemConfig) -> ControllerConfig:
    return load_config(ControllerConfig, rendered(system, "controller"))


def data(system: SystemConfig, name: str) -> dict[str, Any]:
    return yaml.safe_load(rendered(system, name).read_text())


NO_AMTOOL = "amtool missing: `make setup` installs prometheus-alertmanager"
NO_PROMTOOL = "promtool missing: `make setup` installs prometheus"


@pytest.mark.skipif(shutil.which("amtool") is None, reason=NO_AMTOOL)
def test_amtool_accepts_the_alertmanager_config(tmp_path):
    path = rendered(load_system_config(None, tmp_path / "state"), "alertmanager")
    checked = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "1 inhibit rules" in checked.stdout and "1 receivers" in checked.stdout


def test_every_alert_goes_to_the_controller_with_its_token_at_once(tmp_path):
    system = load_system_config(None, tmp_path / "state")
    alertmanager, controller = data(system, "alertmanager"), controller_config(system)
    route = alertmanager["route"]
    (receiver,) = alertmanager["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert route["receiver"] == receiver["name"] and "routes" not in route  # one receiver: the controller
    assert webhook["url"] == f"{controller.url}/v1/alerts"
    assert webhook["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": str(controller.token_file)}
    assert controller.token_file.is_absolute()  # Alertmanager would read a relative one beside its config file
    assert webhook["send_resolved"] is True
    assert route["group_by"] == ["alertname", "variant", "model_version"]
    assert route["group_wait"] == "0s" and route["group_interval"] == "1s" and route["repeat_interval"]


def test_a_canary_error_alert_silences_the_same_canary_latency_alert_only(tmp_path):
    (rule,) = data(load_system_config(None, tmp_path / "state"), "alertmanager")["inhibit_rules"]
    assert rule == {
        "source_matchers": ["alertname = CanaryErrorRateHigh"],
        "target_matchers": ["alertname = CanaryLatencyHigh"],
        "equal": ["variant", "model_version"],
    }
    rules = yaml.safe_load((REPO_ROOT / "monitoring/generated/rules.local.yaml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for name in ("CanaryErrorRateHigh", "CanaryLatencyHigh"):  # both alerts carry the labels compared
        assert "max by (variant, model_version)" in exprs[name]


@pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_prometheus_config_and_its_rules(tmp_path):
    path = rendered(load_system_config(None, tmp_path / "state"), "prometheus")
    checked = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rules.local.yaml" in checked.stdout  # the rule file was found and checked too


def test_prometheus_scrapes_the_target_files_every_second_and_alerts_this_alertmanager(tmp_path):
    system = load_system_config(None, tmp_path / "state")
    prometheus = data(system, "prometheus")
    assert prometheus["global"]["scrape_interval"] == prometheus["global"]["evaluation_interval"] == "1s"
    (scrape,) = prometheus["scrape_configs"]
    (discovery,) = scrape["file_sd_configs"]
    assert discovery["files"] == [f"{SystemPaths(system.state_dir).targets}/*.json"]
    (alerting,) = prometheus["alerting"]["alertmanagers"]
    alertmanager = next(p for p in system.parts if p.name == "alertmanager")
    assert alerting["static_configs"] == [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]
    assert prometheus["rule_files"] == [str(REPO_ROOT / "monitoring/generated/rules.local.yaml")]

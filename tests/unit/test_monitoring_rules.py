"""The alerting rules: one source rendered per profile, every alert documented and tested with promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import rulegen

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "monitoring" / "tests" / "alerts_test.yaml"
REQUIRED_ALERTS = {
    "CanaryErrorRateHigh",
    "CanaryLatencyHigh",
    "CanaryRewardWorse",
    "FeatureDriftHigh",
    "OnlineRewardDecay",
    "ModelStale",
    "FeedbackStalled",
    "PipelineFailed",
    "ControllerDown",
}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")


def alerts(profile: str) -> list[dict]:
    return [rule for group in rulegen.render_groups(profile) for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("profile", ["local", "cluster"])
def test_every_alert_is_documented_with_a_runbook_that_exists(profile):
    names = set()
    for alert in alerts(profile):
        name = alert["alert"]
        names.add(name)
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), f"{name} is not CamelCase"
        assert alert.get("for"), f"{name} has no `for`"
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        for key in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(key), f"{name} has no {key}"
        runbook = ROOT / alert["annotations"]["runbook_url"]
        assert runbook == ROOT / "docs" / "runbooks" / f"{name}.md" and runbook.exists(), runbook
        text = runbook.read_text()
        for part in ("What it means", "What the controller does", "What a person checks"):
            assert part in text, f"{runbook.name} lacks {part!r}"
    assert names >= REQUIRED_ALERTS


def test_every_alert_has_promtool_cases_that_fire_and_that_stay_silent():
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired, silent = set(), set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {alert["alert"] for alert in alerts("local")}
    assert names <= fired, f"no firing case for {names - fired}"
    assert names <= silent, f"no silent case for {names - silent}"


def test_every_metric_a_rule_reads_is_in_the_metrics_contract():
    contract = (ROOT / "docs" / "metrics.md").read_text()
    rules = [rule for group in rulegen.render_groups("local") for rule in group["rules"]]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    for rule in rules:
        for metric in re.findall(r"\b(kfloop_[a-z_]+|up)\b(?=[{\[ )])", rule["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert f"`{base}`" in contract or base in recorded, f"{metric} is not in docs/metrics.md"


def test_a_profile_value_that_is_missing_is_an_error(monkeypatch, tmp_path):
    profiles = yaml.safe_load(rulegen.PROFILES_FILE.read_text())
    del profiles["local"]["rate_window"]
    broken = tmp_path / "profiles.yaml"
    broken.write_text(yaml.safe_dump(profiles))
    monkeypatch.setattr(rulegen, "PROFILES_FILE", broken)
    monkeypatch.setattr(rulegen, "rule_sources", lambda: [ROOT / "monitoring" / "rules" / "kfloop.yaml"])
    with pytest.raises(KeyError, match="rate_window"):
        rulegen.render_groups("local")


@needs_promtool
def test_promtool_rule_tests_pass():
    result = subprocess.run(
        [PROMTOOL, "test", "rules", TESTS.name], cwd=TESTS.parent, capture_output=True, text=True, timeout=120
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_cluster_prometheus_rule_groups_pass_promtool_check(tmp_path):
    resource = yaml.safe_load((ROOT / rulegen.PROMETHEUS_RULE).read_text())
    rules_file = tmp_path / "cluster-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": resource["spec"]["groups"]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

"""CanaryRewardWorse acts (issue 18's acceptance), on the system `kfloop up` runs: the serving stack on the OBD
testbed, the collector, the joiner, the controller, and the real Alertmanager and Prometheus.

Production knows which items the simulated users like; the candidate ranks in random order. It enters an experiment
as a canary (one stage at 50% of the users, a small preregistered sample), simulated users rank and click through
the front door, and the stage's sequential test decides "inferior" from the joiner's counts. The experiment's own
step rolls the canary back at once; the controller exports that decision, Prometheus fires CanaryRewardWorse on it,
Alertmanager notifies the controller, and the controller's rollback for the alert finds the canary gone and records
so (`nothing_to_do`). Printed: the impressions the canary served and the times from the experiment's start.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kfloop.audit.canonical import parse_rfc3339
from kfloop.deploy import read_state
from kfloop.registry import ModelRegistry
from kfloop.simulate import ClickWorld
from monitoring import rulegen
from tests.integration import test_alerts_act
from tests.integration.test_alerts_act import LOOP, controller_of, url_of
from tests.integration.test_experiment_stages import LOGIT_SHIFT, Users, _item_logits
from tests.support import testbed
from tests.support.contract_model import ContractSpec, register
from tests.support.system import REPO_ROOT, Controller, Prometheus, part_of, system_data, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.serving]

TEST = {"margin": 0.02, "alpha": 0.05, "min_samples": 300, "max_samples": 3000, "on_max_sample": "rollback"}
STAGE = {"name": "canary-50", "percent": 50, "test": TEST}
RATE = 10
"""Rankings a second: a few hundred canary impressions within a minute, with little load on a shared host."""
LATENCY_S = "10"

system = test_alerts_act.system  # the fixture: `kfloop up` when the test calls it, `kfloop down` at its end


def register_versions(bed: testbed.Testbed, world: ClickWorld) -> tuple[str, str]:
    """(the random-order candidate, production): production knows what the users like and, registered last, is the
    version `kfloop up` serves as stable."""
    registry = ModelRegistry(bed.registry_uri)
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    candidate = register(registry, bed.root / "work", ContractSpec(seed=21, random_order=True), created_at=before)
    knows = ContractSpec(seed=22, item_bias=_item_logits(world, 1.0))
    production = register(registry, bed.root / "work", knows, created_at=before + timedelta(minutes=1))
    return candidate, production


def reward_system(work: Path) -> dict[str, Any]:
    """The default system without the follower (features stay as the testbed wrote them) and the explainer, one
    predictor per version. The controller's experiment is one canary stage, evaluated every half second. Prometheus
    evaluates the local rules with CanaryLatencyHigh's threshold at LATENCY_S: on a host that other suites keep
    busy a canary's p99 can pass the local 0.25 s, and this test is about the reward alert, not that one."""
    config = system_data(keep=["collector", "features-apply", "joiner", "serving", *LOOP])
    part_of(config, "serving")["config_overrides"] |= {"stack.predictor_replicas": 1, "stack.run_explainer": False}
    controller = part_of(config, "controller")
    controller["config_file"] = str(changed_file(controller["config_file"], work, experiment={"stages": [STAGE]}))
    controller["config_overrides"] |= {"reconcile_interval_s": 0.2, "experiment.poll_interval_s": 0.5}
    rules = work / "rules.yaml"
    rules.write_text(rulegen.dump({"groups": rulegen.render_groups("local", {"canary_max_p99_seconds": LATENCY_S})}))
    prometheus = part_of(config, "prometheus")
    prometheus["config_file"] = str(changed_file(prometheus["config_file"], work, rule_files=[str(rules)]))
    return config


def changed_file(path: str, work: Path, **changed: Any) -> Path:
    """A copy of a part's config file (in `work`) with some top-level keys changed (the overrides set scalars)."""
    data = yaml.safe_load((REPO_ROOT / path).read_text())
    for key, value in changed.items():
        data[key] = data[key] | value if isinstance(value, dict) else value
    copy = work / Path(path).name
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def joiner_counts(joiner_url: str, version: str) -> dict[str, float]:
    """The joiner's impressions and clicks of `version` as the canary."""
    text = httpx.get(f"{joiner_url}/metrics", timeout=5).text
    counts = {"impressions": 0.0, "clicks": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model_version") == version and sample.labels.get("variant") == "canary":
                for kind in counts:
                    if sample.name == f"kfloop_joiner_{kind}_total":
                        counts[kind] += sample.value
    return counts


def slates_of(runs: Path, version: str) -> list[dict[str, Any]]:
    """The simulator's ground truth of the slates `version` answered (items shown, clicks drawn, when)."""
    records = [json.loads(line) for path in runs.glob("*/rankings.jsonl") for line in path.open()]
    return [r for r in records if r["model_version"] == version]


def reward_rollbacks(controller: Controller) -> list[dict[str, Any]]:
    """The controller's finished rollback actions called for by CanaryRewardWorse."""
    return [
        a
        for a in controller.actions("rollback")
        if a["phase"] == "done" and {x["alertname"] for x in a["alerts"]} == {"CanaryRewardWorse"}
    ]


def seconds_between(start: str, end: str) -> float:
    return (parse_rfc3339(end) - parse_rfc3339(start)).total_seconds()


@pytest.mark.timeout(1800)  # the stack and the canary's predictor start (TensorFlow) on a host other suites share
def test_a_canary_ranking_in_random_order_is_rolled_back_on_canary_reward_worse(tmp_path: Path, system) -> None:
    state = tmp_path / "state"
    bed = testbed.build(state, versions=0, use_obd_sample=True)
    assert bed.items == [str(i) for i in range(80)], "needs the OBD sample in data/ (make data)"
    world = ClickWorld.from_obd(REPO_ROOT / "data", logit_shift=LOGIT_SHIFT)
    candidate, production = register_versions(bed, world)
    _, live = system(reward_system(tmp_path))
    prometheus, controller = Prometheus(url_of(live, "prometheus")), controller_of(live, state)
    assert read_state(state / "serving").stable.version == production
    endpoints = json.loads((state / "serving" / "endpoints.json").read_text())
    wait_for(lambda: prometheus.targets("kfloop-controller"), "Prometheus to scrape the controller", 30)

    users = Users(tmp_path, endpoints["transformer"], url_of(live, "collector"), world, RATE)
    users.start()
    try:
        began = time.monotonic()
        started = controller.start_experiment(candidate)
        done = wait_for(lambda: (a := controller.action(started["id"]))["phase"] == "done" and a, "the test", 600, 0.2)
        walked_back = time.monotonic()
        print(f"\nthe experiment ended after {walked_back - began:.1f} s: {done['outcome']}: {done['reason']}")
        alerts = wait_for(lambda: prometheus.alerts("CanaryRewardWorse"), "CanaryRewardWorse to fire", 120, 0.2)
        fired = time.monotonic()
        handled = wait_for(lambda: reward_rollbacks(controller), "the controller's handling of the alert", 60, 0.2)
        recorded = time.monotonic()
    finally:
        users.stop.set()
        users.join(60)
    assert done["outcome"] == "rolled_back", done["reason"]
    experiment = controller.experiment(done["details"]["experiment"])
    (stage,) = experiment["stages"]
    numbers = stage["last_observation"]["numbers"]
    assert stage["decision"] == "inferior" and numbers["candidate_impressions"] <= TEST["max_samples"], stage

    joined = joiner_counts(url_of(live, "joiner"), candidate)
    slates = slates_of(tmp_path / "runs", candidate)
    slots, clicks = sum(len(r["items"]) for r in slates), sum(sum(r["clicks"]) for r in slates)
    first_slate = min(r["ts"] for r in slates)
    serving_from = seconds_between(done["created_at"], first_slate)  # the canary's predictor loading
    rolled_back = seconds_between(done["created_at"], done["finished_at"])
    print(
        f"the random-order canary {candidate} served {joined['impressions']:g} impressions ({joined['clicks']:g} "
        f"clicks) by the joiner's count, {slots} ({clicks} clicks) by the simulator's; the test decided on "
        f"{numbers['candidate_impressions']} (CTR {numbers['candidate_ctr']:.3f}) against production's "
        f"{numbers['control_impressions']} (CTR {numbers['control_ctr']:.3f}): z {numbers['statistic']:.2f}, "
        f"boundary {numbers['boundary']:.2f}\n"
        f"from the experiment's start: the canary's first slate after {serving_from:.1f} s (its predictor loading), "
        f"rolled back by the experiment after {rolled_back:.1f} s ({rolled_back - serving_from:.1f} s after its "
        f"first slate); CanaryRewardWorse "
        f"firing after {fired - began:.1f} s; the controller's handling of its notification recorded after "
        f"{recorded - began:.1f} s"
    )
    assert joined["impressions"] >= TEST["min_samples"] and slots >= TEST["min_samples"]

    (alert,) = alerts  # Prometheus's alert names the experiment's candidate...
    assert alert["labels"]["model_version"] == candidate and alert["labels"]["experiment"] == experiment["id"]
    (action,) = handled  # ...Alertmanager delivered it, and the controller's rollback found the canary gone
    assert action["outcome"] == "nothing_to_do", action
    print(f"the controller's rollback for CanaryRewardWorse ({action['id']}): {action['outcome']}: {action['reason']}")
    assert [x["labels"]["model_version"] for x in action["alerts"]] == [candidate]
    assert seconds_between(done["finished_at"], action["created_at"]) >= 0
    assert not [a for a in controller.actions("rollback") if a["outcome"] == "rolled_back"]
    assert controller.alert_notifications(state / "controller" / "state.db").get("CanaryRewardWorse", 0) >= 1

    serving = read_state(state / "serving")  # the canary at 0% (none), production stable, the reason on record
    assert serving.canary is None and serving.stable.version == production
    last = serving.history[-1]
    assert (last.action, last.version) == ("rollback", candidate) and "inferior" in last.note, last
    print(f"the serving state's last change: {last.action} {last.version} by {last.by}: {last.note}")

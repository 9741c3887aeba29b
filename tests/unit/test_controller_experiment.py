"""The controller runs an experiment's stages, in-process on real state (its SQLite, the experiment store, the
serving state and registry `kfloop deploy` uses, the audit store): shadow -> canary 10% -> 50% -> 100% for a
better candidate, a rollback for a worse one, the default at max sample undecided, the manual approval, a retrained
version handed on to its experiment, the preregistration written before each stage and never changed, and the
test's numbers in the audit trail and as metrics.

The joiner's counts are simulated: each read adds impressions split as the serving state routes them (the
candidate's share of users) and clicks drawn at each arm's CTR, so what the controller reads follows what it
deploys. The joiner itself, with real predictors, is in tests/integration/test_experiment_stages.py.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError

from kfloop.audit import AuditRecorder, store_delivery
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.deploy import change_serving, read_state, rollback
from kfloop.experiments import ArmCounts
from kfloop.experiments.store import ExperimentStore
from kfloop.registry import ModelRegistry
from monitoring.controller.app import build_controller, create_app
from monitoring.controller.config import ControllerConfig, StageConfig
from monitoring.controller.counts import parse_counts, parse_mirrored, since
from monitoring.controller.metrics import controller_registry
from tests.support.controller import config_data, register
from tests.unit.test_controller_api import AUTH, wait_ready
from tests.unit.test_controller_engine import DRIFT, Harness

CONTROL_CTR = 0.10
TEST = {"margin": 0.02, "alpha": 0.05, "min_samples": 300, "max_samples": 6000}
STAGES = [
    {"name": "shadow", "mode": "shadow", "duration_s": 0.2},
    {"name": "canary-10", "percent": 10, "test": TEST},
    {"name": "canary-50", "percent": 50, "test": TEST},
]


def experiment_config(**changes: Any) -> dict[str, Any]:
    return {"enabled": True, "poll_interval_s": 0.01, "stages": STAGES, **changes}


class SimulatedJoiner:
    """The joiner's cumulative counts, advanced at each read by `per_read` impressions routed as the serving state
    says: the canary's percent to the candidate (none in shadow), the rest to stable."""

    def __init__(self, state_dir: Path, candidate_ctr: float, seed: int, per_read: int = 400) -> None:
        self.state_dir, self.candidate_ctr, self.per_read = state_dir, candidate_ctr, per_read
        self.rng = np.random.default_rng(seed)
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.reads = 0

    def _add(self, key: tuple[str, str], impressions: int, ctr: float) -> None:
        arm = self.counts.setdefault(key, [0, 0])
        arm[0] += impressions
        arm[1] += int(self.rng.binomial(impressions, ctr))

    def __call__(self, url: str) -> dict[tuple[str, str], ArmCounts]:
        self.reads += 1
        state = read_state(self.state_dir)
        canary = state.canary if state is not None else None
        to_candidate = 0
        if canary is not None and canary.mode == "canary":
            to_candidate = int(self.rng.binomial(self.per_read, canary.percent / 100))
            self._add((canary.version, "canary"), to_candidate, self.candidate_ctr)
        self._add((state.stable.version, "stable"), self.per_read - to_candidate, CONTROL_CTR)
        return {k: ArmCounts(impressions=i, clicks=c) for k, (i, c) in self.counts.items()}


@pytest.fixture
def audit_store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "audit.db") as store:
        yield store


@pytest.fixture
def versions(tmp_path: Path) -> list[str]:
    """Two blessed versions: the newer is stable (it seeds the state), the older is the candidate."""
    registry = ModelRegistry(tmp_path / "registry")
    return [register(registry, tmp_path / "models", n) for n in range(2)]


def running(tmp_path: Path, audit_store: SqliteStore, candidate_ctr: float, **changes: Any) -> Harness:
    harness = Harness(tmp_path, audit_store, experiment=experiment_config(**changes))
    controller = harness.start()
    joiner = SimulatedJoiner(harness.config.serving.state_dir, candidate_ctr, seed=7)
    controller.kinds["experiment"].read = joiner
    return harness


def start_experiment(harness: Harness, candidate: str) -> str:
    assert harness.controller is not None
    return harness.controller.open_action("experiment", {"candidate": candidate}).id


def experiment_records(harness: Harness) -> list[dict[str, Any]]:
    return [r for r in harness.records() if r["action"] == "experiment"]


def test_a_better_candidate_walks_every_stage_to_100_percent(tmp_path, audit_store, versions):
    harness = running(tmp_path, audit_store, candidate_ctr=0.14)
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle()
        done = harness.controller.store.action(action_id)
        assert done.outcome == "promoted", done.reason
        state = read_state(harness.config.serving.state_dir)
        assert state.stable.version == versions[0] and state.canary is None
        stages = [h for h in state.history if h.action == "stage"]
        assert [h.percent for h in stages] == [0, 10, 50]
        records = experiment_records(harness)
        outcomes = [r["outcome"] for r in records]
        assert outcomes == ["stage_started:shadow", "stage_started:canary-10", "stage_started:canary-50", "promoted"]
        with ExperimentStore(harness.config.experiments_db) as store:
            experiment = store.get(done.details["experiment"])
            assert (experiment.status, experiment.model_version) == ("promoted", versions[0])
            assert [s.name for s in experiment.stages] == ["shadow", "canary-10", "canary-50"]
            assert [s.outcome for s in experiment.stages] == ["passed"] * 3
            for stage, record in zip(experiment.stages[1:], records[1:3], strict=True):
                assert stage.digest == stage.preregistration.digest()
                assert f"preregistration sha256 {stage.digest}" in record["reason"]  # written before the stage
                assert record["details"]["digest"] == stage.digest
                series = store.series(experiment.id, stage.index)
                assert series[-1].decision == "non_inferior" and series[-1].numbers["preregistration"] == stage.digest
                assert all(o.decision == "continue" for o in series[:-1])
        # the numbers of both tests are in the promotion's audit record
        decisions = records[-1]["details"]["decisions"]
        assert set(decisions) == {"canary-10", "canary-50"}
        assert all(d["statistic"] >= d["boundary"] and d["lower"] > -TEST["margin"] for d in decisions.values())
    finally:
        harness.controller.close()


def test_a_worse_candidate_is_rolled_back_with_the_tests_numbers(tmp_path, audit_store, versions):
    harness = running(tmp_path, audit_store, candidate_ctr=0.03)
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle()
        done = harness.controller.store.action(action_id)
        assert done.outcome == "rolled_back", done.reason
        assert "stage canary-10" in done.reason and "inferior" in done.reason
        state = read_state(harness.config.serving.state_dir)
        assert state.canary is None and state.stable.version == versions[1]
        decision = experiment_records(harness)[-1]["details"]["decisions"]["canary-10"]
        assert decision["decision"] == "inferior" and decision["upper"] < -TEST["margin"]
        assert decision["candidate_impressions"] <= TEST["max_samples"]
        text = generate_latest(controller_registry(harness.controller)).decode()
        experiment = done.details["experiment"]
        inferior = (
            f'kfloop_experiment_decision{{decision="inferior",experiment="{experiment}",'
            f'model_version="{versions[0]}",stage="canary-10"}} 1.0'
        )
        assert inferior in text
    finally:
        harness.controller.close()


def test_undecided_at_max_samples_ends_as_preregistered(tmp_path, audit_store, versions):
    test = {**TEST, "min_samples": 50, "max_samples": 120, "margin": 0.001}
    stages = [{"name": "canary-10", "percent": 10, "test": test}]
    harness = running(tmp_path, audit_store, candidate_ctr=CONTROL_CTR, stages=stages)
    try:
        done_id = start_experiment(harness, versions[0])
        harness.settle()
        done = harness.controller.store.action(done_id)
        assert done.outcome == "rolled_back" and "undecided at max_samples 120: rollback" in done.reason
    finally:
        harness.controller.close()


def test_with_approval_the_last_step_waits_for_kfloop_approve(tmp_path, audit_store, versions):
    harness = running(tmp_path, audit_store, candidate_ctr=0.14, approval_before_full=True)
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle(lambda: harness.controller.store.action(action_id).phase == "approval")
        for _ in range(20):
            harness.controller.reconcile_once()
        assert harness.controller.store.action(action_id).phase == "approval"
        assert read_state(harness.config.serving.state_dir).canary.percent == 50
        experiment = harness.controller.store.action(action_id).details["experiment"]
        harness.controller.experiments.approve(experiment, "alice", "2026-12-07T10:00:00Z")
        harness.settle()
        done = harness.controller.store.action(action_id)
        assert done.outcome == "promoted" and "approved by alice" in done.reason
    finally:
        harness.controller.close()


def test_a_blessed_retraining_result_is_handed_to_its_experiment(tmp_path, audit_store, versions):
    harness = running(tmp_path, audit_store, candidate_ctr=0.14)
    try:
        (retrain,) = harness.send(DRIFT)
        harness.settle()
        done = harness.controller.store.action(retrain.id)
        assert done.outcome == "experiment" and done.model_version not in versions
        (experiment,) = harness.controller.store.recent_actions(5, "experiment")
        assert experiment.details["candidate"] == done.model_version and experiment.outcome == "promoted"
        assert read_state(harness.config.serving.state_dir).stable.version == done.model_version
    finally:
        harness.controller.close()


def test_a_stage_preregistration_is_never_changed(tmp_path, audit_store, versions):
    harness = running(tmp_path, audit_store, candidate_ctr=0.14)
    try:
        start_experiment(harness, versions[0])
        harness.settle()
    finally:
        harness.controller.close()
    with ExperimentStore(harness.config.experiments_db) as store:
        (experiment,) = store.list_experiments()
        first = store.stage(experiment.id, 1)
        again = store.start_stage(experiment.id, first.__class__(**{**first.__dict__, "baseline": {"x": [1, 1]}}))
        assert again == first  # a repeat registration returns the first, unchanged
    db = sqlite3.connect(harness.config.experiments_db)
    for sql in ("UPDATE stages SET preregistration = '{}'", "UPDATE stages SET digest = 'x'", "DELETE FROM stages"):
        with pytest.raises(sqlite3.IntegrityError, match=r"immutable|never deleted"):
            db.execute(sql)
    db.close()


def test_counts_are_read_from_the_joiners_counters_and_taken_since_the_stage_began():
    registry = CollectorRegistry()
    impressions = Counter("kfloop_joiner_impressions", "", ["model_version", "variant"], registry=registry)
    clicks = Counter("kfloop_joiner_clicks", "", ["model_version", "variant"], registry=registry)
    impressions.labels("v2", "canary").inc(900)
    clicks.labels("v2", "canary").inc(80)
    impressions.labels("v1", "stable").inc(5000)
    counts = parse_counts(generate_latest(registry).decode())
    assert counts == {
        ("v2", "canary"): ArmCounts(impressions=900, clicks=80),
        ("v1", "stable"): ArmCounts(impressions=5000, clicks=0),
    }
    baseline = {"v2/canary": [100, 10]}
    assert since(counts, baseline, ("v2", "canary")) == ArmCounts(impressions=800, clicks=70)
    assert since(counts, baseline, ("v3", "canary")) == ArmCounts(impressions=0, clicks=0)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"name": "canary-10", "percent": 10}, "stage canary-10: a canary stage needs a test"),
        ({"name": "shadow", "mode": "shadow", "percent": 5}, "stage shadow: a shadow stage serves nobody"),
        ({"name": "Canary 10", "percent": 10, "test": TEST}, "name"),
    ],
)
def test_a_bad_stage_names_itself_and_the_reason(stage, message):
    with pytest.raises(ValidationError, match=message):
        StageConfig.model_validate(stage)


def test_stage_names_must_not_repeat(tmp_path):
    stages = [{"name": "c", "percent": 10, "test": TEST}, {"name": "c", "percent": 50, "test": TEST}]
    with pytest.raises(ValidationError, match="stage names repeat"):
        ControllerConfig.model_validate(config_data(tmp_path, experiment={"stages": stages}))


def test_the_api_starts_shows_and_approves_an_experiment(tmp_path):
    for n in range(2):
        register(ModelRegistry(tmp_path / "registry"), tmp_path / "models", n)
    stable, candidate = ModelRegistry(tmp_path / "registry").deployable()[::-1][:2]
    data = config_data(tmp_path, experiment=experiment_config(stages=[STAGES[0] | {"duration_s": 3600}]))
    config = ControllerConfig.model_validate(data)
    with SqliteStore(tmp_path / "audit.db") as audit_store:
        recorder = AuditRecorder(config.audit, deliver=store_delivery(audit_store))
        with TestClient(create_app(config, build_controller(config, recorder=recorder))) as client:
            wait_ready(client)
            assert client.post("/v1/experiments", json={"candidate": candidate}, headers=AUTH).status_code == 422
            started = client.post("/v1/experiments", json={"candidate": candidate, "operator": "bob"}, headers=AUTH)
            assert started.status_code == 200 and started.json()["kind"] == "experiment"
            busy = client.post("/v1/experiments", json={"candidate": candidate, "operator": "bob"}, headers=AUTH)
            assert busy.status_code == 409 and "one candidate at a time" in busy.json()["message"]
            deadline = time.monotonic() + 30
            while not (listed := client.get("/v1/experiments", headers=AUTH).json()):
                assert time.monotonic() < deadline
            (experiment,) = listed
            assert (experiment["model_version"], experiment["control_version"]) == (candidate, stable)
            nobody = client.post("/v1/experiments/exp-nope/approve", json={"operator": "al"}, headers=AUTH)
            assert nobody.status_code == 404
            approve = f"/v1/experiments/{experiment['id']}/approve"
            approved = client.post(approve, json={"operator": "al"}, headers=AUTH)
            assert approved.status_code == 200 and approved.json()["outcome"] == "approved"
            shown = client.get(f"/v1/experiments/{experiment['id']}", headers=AUTH).json()
            assert shown["approved_by"] == "al" and shown["stages"][0]["name"] == "shadow"
            assert client.get("/v1/experiments", headers={}).status_code == 401


def test_a_shadow_stage_waits_for_its_mirrored_requests(tmp_path, audit_store, versions):
    stages = [{**STAGES[0], "duration_s": 0, "min_mirrored": 50}, STAGES[1]]
    harness = running(tmp_path, audit_store, 0.14, stages=stages, mirror_counts_url="http://127.0.0.1:9/metrics")
    answered = iter([0, 10, 49, 50])
    asked: list[tuple[str, str]] = []

    def mirrored(url: str, version: str) -> int:
        asked.append((url, version))
        return next(answered)

    harness.controller.kinds["experiment"].read_mirrored = mirrored
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle(lambda: harness.controller.store.action(action_id).details.get("stage") == 1)
        assert asked == [("http://127.0.0.1:9/metrics", versions[0])] * 4
        (started,) = [r for r in experiment_records(harness) if r["outcome"] == "stage_started:canary-10"]
        assert "50 mirrored requests answered (its gate: 50)" in started["reason"]
    finally:
        harness.controller.close()


def test_mirrored_requests_are_read_from_the_routers_counter():
    from serving.common.ranking_metrics import ranking_requests_counter

    registry = CollectorRegistry()
    requests = ranking_requests_counter(registry)
    requests.labels("router", "v2", "shadow", "200").inc(70)
    requests.labels("router", "v2", "shadow", "500").inc(5)
    requests.labels("router", "v2", "canary", "200").inc(9)
    requests.labels("router", "v1", "shadow", "200").inc(3)
    assert parse_mirrored(generate_latest(registry).decode(), "v2") == 70


def test_a_shadow_gated_on_mirrored_requests_needs_somewhere_to_count_them(tmp_path):
    stages = [{**STAGES[0], "min_mirrored": 5}]
    with pytest.raises(ValidationError, match="mirror_counts_url is required"):
        ControllerConfig.model_validate(config_data(tmp_path, experiment={"stages": stages}))


def test_a_paused_controller_freezes_a_stage_and_a_rollback_elsewhere_ends_the_experiment(
    tmp_path, audit_store, versions
):
    harness = running(tmp_path, audit_store, candidate_ctr=0.14)
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle(lambda: harness.controller.store.action(action_id).details.get("stage") == 1)
        harness.controller.pause("ops", "investigating")
        for _ in range(30):
            harness.controller.reconcile_once()
        assert harness.controller.store.action(action_id).details["stage"] == 1  # frozen, not promoted
        change_serving(harness.target, "rollback", lambda s: rollback(s, operator="ops", canary_only=True))
        harness.controller.resume("ops", "")
        harness.settle()
        done = harness.controller.store.action(action_id)
        assert done.outcome == "ended" and "no longer the canary" in done.reason
        assert harness.controller.experiments.get(done.details["experiment"]).status == "ended"
    finally:
        harness.controller.close()

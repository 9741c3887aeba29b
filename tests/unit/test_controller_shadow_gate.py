"""A shadow stage's off-policy gate in the controller, in-process on real state (its SQLite, the experiment store,
the serving state, the audit store). The evidence (the shadow's slates joined to production's logged slots and
clicks) is simulated as in tests/unit/test_experiments_shadow.py, with known true values; the readers of the audit
sink and the event log are exercised by tests/integration/test_experiment_stages.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from kfloop.audit.canonical import rfc3339
from kfloop.audit.config import AuditStoreConfig
from kfloop.audit.record import record_json
from kfloop.deploy import read_state
from kfloop.eventlog import EventLog, EventLogConfig
from kfloop.experiments.shadow import ShadowRows
from kfloop.experiments.store import ExperimentStore
from monitoring.controller.config import ControllerConfig
from monitoring.controller.metrics import controller_registry
from monitoring.controller.shadow import ShadowEvidence, ShadowQuery, shadow_slate
from serving.audit.config import AuditSinkConfig
from tests.support.controller import config_data
from tests.support.joiner import feedback, slate
from tests.unit.test_audit_sink import running as running_sink
from tests.unit.test_audit_support import decision, decision_json
from tests.unit.test_controller_experiment import STAGES, experiment_records, running, start_experiment
from tests.unit.test_experiments_shadow import BETTER, WORSE, simulate

SOURCES = {"audit_url": "http://127.0.0.1:9", "event_log_uri": "/nonexistent/events"}


def gated(**gate: Any) -> list[dict[str, Any]]:
    shadow = {**STAGES[0], "off_policy": {"margin": 0.02, "min_matched": 2500, "n_boot": 200, **gate}}
    return [shadow, *STAGES[1:]]


class Evidence:
    """The shadow's evidence growing with each read: `per_read` more mirrored requests of the simulation."""

    def __init__(self, candidate: np.ndarray, per_read: int) -> None:
        self.candidate, self.per_read, self.queries = candidate, per_read, []

    def __call__(self, query: ShadowQuery) -> ShadowRows:
        self.queries.append(query)
        return simulate(self.candidate, self.per_read * len(self.queries), seed=5)


def with_evidence(harness, evidence: Evidence):
    harness.controller.kinds["experiment"].read_shadow = evidence
    return harness


def test_a_better_shadow_passes_its_off_policy_gate_with_its_numbers_on_record(tmp_path, audit_store, versions):
    harness = running(tmp_path, audit_store, 0.14, stages=gated(), **SOURCES)
    evidence = Evidence(BETTER, per_read=2000)
    with_evidence(harness, evidence)
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle(lambda: harness.controller.store.action(action_id).details.get("stage") == 1)
        action = harness.controller.store.action(action_id)
        query = evidence.queries[-1]
        assert (query.experiment, query.candidate, query.control) == (
            action.details["experiment"],
            versions[0],
            versions[1],
        )
        numbers = action.details["decisions"]["shadow"]
        assert numbers["kind"] == "off_policy" and numbers["decision"] == "non_inferior"
        assert numbers["difference_low"] > -0.02 and numbers["matched"] >= 2500
        (started,) = [r for r in experiment_records(harness) if r["outcome"] == "stage_started:canary-10"]
        assert "off-policy ips" in started["reason"] and "-> non_inferior" in started["reason"]
        with ExperimentStore(harness.config.experiments_db) as store:
            shadow = store.stage(action.details["experiment"], 0)
            assert (shadow.decision, shadow.outcome) == ("non_inferior", "passed")
            (observed,) = store.series(action.details["experiment"], 0)  # computed once
            assert observed.numbers == numbers
        text = generate_latest(controller_registry(harness.controller)).decode()
        assert 'kfloop_experiment_offpolicy_value{bound="low"' in text
        assert 'decision="non_inferior",experiment=' in text and "kfloop_experiment_offpolicy_slots" in text
        print(f"\n{started['reason']}")
    finally:
        harness.controller.close()


def test_a_worse_shadow_is_rolled_back_before_it_serves_anyone(tmp_path, audit_store, versions):
    harness = with_evidence(
        running(tmp_path, audit_store, 0.14, stages=gated(), **SOURCES), Evidence(WORSE, per_read=1000)
    )
    try:
        action_id = start_experiment(harness, versions[0])
        harness.settle()
        done = harness.controller.store.action(action_id)
        assert done.outcome == "rolled_back" and "stage shadow: off-policy" in done.reason, done.reason
        assert read_state(harness.config.serving.state_dir).canary is None
        with ExperimentStore(harness.config.experiments_db) as store:
            experiment = store.get(done.details["experiment"])
            assert [(s.name, s.decision, s.outcome) for s in experiment.stages] == [
                ("shadow", "inferior", "rolled_back")
            ]
    finally:
        harness.controller.close()


@pytest.mark.parametrize(
    ("on_inconclusive", "outcome"), [("pass", "promoted"), ("rollback", "rolled_back"), ("hold", None)]
)
def test_thin_evidence_waits_until_its_deadline_then_does_as_configured(
    tmp_path, audit_store, versions, on_inconclusive, outcome
):
    stages = gated(min_matched=10**6, max_wait_s=0.5, on_inconclusive=on_inconclusive)
    harness = with_evidence(running(tmp_path, audit_store, 0.14, stages=stages, **SOURCES), Evidence(BETTER, 20))
    try:
        action_id = start_experiment(harness, versions[0])
        if outcome is None:
            harness.settle(lambda: harness.controller.store.action(action_id).details.get("held"))
            for _ in range(20):
                harness.controller.reconcile_once()
            held = harness.controller.store.action(action_id)
            assert held.phase == "stage" and held.details["stage"] == 0
            (record,) = [r for r in experiment_records(harness) if r["outcome"] == "held:shadow"]
            assert "thin_evidence" in record["reason"] and "held in shadow" in record["reason"]
            return
        harness.settle()
        done = harness.controller.store.action(action_id)
        assert done.outcome == outcome, done.reason
        assert done.details["decisions"]["shadow"]["decision"] == "thin_evidence"
        assert len(harness.controller.kinds["experiment"].read_shadow.queries) > 1  # it waited for evidence
    finally:
        harness.controller.close()


def test_an_off_policy_gate_needs_its_sources_and_a_shadow_stage(tmp_path):
    with pytest.raises(ValidationError, match="audit_url and event_log_uri are required"):
        ControllerConfig.model_validate(config_data(tmp_path, experiment={"stages": gated()}))
    canary = {**STAGES[1], "off_policy": {}}
    with pytest.raises(ValidationError, match="off_policy are a shadow stage's gates"):
        ControllerConfig.model_validate(config_data(tmp_path, experiment={"stages": [canary], **SOURCES}))


def test_the_evidence_is_productions_served_slots_of_mirrored_requests_and_the_shadows_recorded_slate(tmp_path):
    """The event log side read for real (a log written by the collector's writer); the shadow's slate and exact
    probabilities parsed from a real decision record."""
    ts = datetime.now(UTC).replace(microsecond=0)
    stable = {"model_version": "v1", "variant": "stable"}
    records = [
        *[{**r, "propensity": p} for r, p in zip(slate("r1", ["a", "b"], ts, **stable), (0.9, 0.05), strict=True)],
        *slate("r2", ["c"], ts, model_version="v2", variant="canary"),  # not production's
        *slate("r3", ["d"], ts, **stable),  # production's, without a propensity: not weighable
        *slate("r4", ["e"], ts, **stable),  # not mirrored
        feedback("click-1", "click", "b", ts + timedelta(seconds=2), request_id="r1", **stable),
    ]
    config = EventLogConfig(wal_dir=tmp_path / "wal", log_uri=str(tmp_path / "events"))
    with EventLog(config, writer_id="test") as log:
        log.append(records)
    evidence = ShadowEvidence("http://127.0.0.1:9", config.log_uri)
    query = ShadowQuery("exp-7", "v2", "v1", rfc3339(ts - timedelta(minutes=1)))
    slots = evidence.logged(query, {"r1", "r2", "r3"})
    assert sorted((s.request_id, s.item_id, s.position, s.propensity, s.clicked) for s in slots) == [
        ("r1", "a", 1, 0.9, False),
        ("r1", "b", 2, 0.05, True),
    ]
    record = record_json(decision(5, variant="shadow", experiment="exp-7", arm="shadow"))
    shown = shadow_slate(record)
    assert shown.probabilities is None and shown.items == {c["position"]: c["item_id"] for c in record["candidates"]}
    table = {"a": [0.5, 0.25], "b": [0.5, 0.75]}
    exact = shadow_slate({**record, "slot_probabilities": table})
    assert exact.probability("b", 2) == 0.75 and exact.probability("z", 1) == 0.0


def test_the_shadows_slates_are_read_from_the_audit_sink_page_by_page_and_on_from_the_last_read(tmp_path):
    """The real audit sink app (in-process): only this experiment's shadow decisions of the candidate count, pages
    are followed, and a later call fetches only what came after."""
    config = AuditSinkConfig(store=AuditStoreConfig(url=f"sqlite:///{tmp_path / 'audit.db'}"), max_page_records=4)
    with running_sink(config) as client:
        fetched: list[str] = []

        def fetch(url: str) -> dict[str, Any]:
            fetched.append(url)
            return client.get(url.removeprefix("http://sink")).json()

        def post(numbers: range, **fields: Any) -> None:
            records = [decision_json(i, **{"model_version": "v2", "variant": "shadow", **fields}) for i in numbers]
            assert client.post("/v1/decisions", json=records).status_code == 200

        post(range(0, 6), experiment="exp-7", arm="shadow")
        post(range(6, 8), experiment="exp-other", arm="shadow")  # another experiment's shadow
        post(range(8, 9), variant="canary")  # the candidate served, not mirrored
        evidence = ShadowEvidence("http://sink", str(tmp_path / "events"), fetch=fetch)
        query = ShadowQuery("exp-7", "v2", "v1", "2000-01-01T00:00:00Z")
        assert [s.request_id for s in evidence.slates(query)] == [f"req-{i:06d}" for i in range(6)]
        assert len(fetched) == 3  # pages of 4: 4 + 4 + 1 records
        post(range(9, 11), experiment="exp-7", arm="shadow")
        assert len(evidence.slates(query)) == 8
        assert "after_seq=9" in fetched[3]  # on from the last record read

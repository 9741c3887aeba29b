"""The controller's decisions and steps, in-process, on real state: its SQLite, the serving state directory and
model registry that `kfloop deploy | rollback` use, the audit store (records delivered straight into it), and
retraining runs that are real subprocesses (the training stand-in).

Proved here: deduplication by fingerprint and start time, one retraining run for drift and decay together,
one run at a time, the cooldown, the kill switch, and a restart that neither repeats nor forgets an action.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kfloop.audit import AuditRecorder, RowQuery, store_delivery, verify_store
from kfloop.audit.store.sqlite import SqliteStore
from kfloop.deploy import ServingTarget, change_serving, deploy, load_or_seed, read_state
from kfloop.registry import ModelRegistry
from monitoring.controller.alerts import parse_notification
from monitoring.controller.app import build_controller
from monitoring.controller.config import ControllerConfig
from monitoring.controller.engine import Controller
from monitoring.controller.store import DONE
from tests.support.controller import MANIFEST, T0, alert, config_data, notification

DRIFT = alert("FeatureDriftHigh", "retrain", feature="user_feature_0", model_version="v1")
DECAY = alert("OnlineRewardDecay", "retrain", model_version="v1", variant="stable")


class Harness:
    """Controllers on one tmp directory; each `start()` is a fresh process's worth of objects."""

    def __init__(self, tmp_path: Path, audit_store: SqliteStore, **overrides: Any) -> None:
        self.tmp_path = tmp_path
        self.audit_store = audit_store
        self.config = ControllerConfig.model_validate(config_data(tmp_path, **overrides))
        self.target = ServingTarget(
            self.config.serving.state_dir, MANIFEST, ModelRegistry(self.config.serving.registry_uri)
        )
        self.controller: Controller | None = None

    def start(self) -> Controller:
        recorder = AuditRecorder(self.config.audit, deliver=store_delivery(self.audit_store))
        self.controller = build_controller(self.config, recorder=recorder)
        self.controller.open(start_worker=False)  # the test drives reconcile_once itself
        return self.controller

    def crash(self) -> None:
        """Drop the controller as SIGKILL would: no step is finished, nothing more is shipped or closed cleanly
        (only its threads stop and its spool lock is released, which the kernel does for a killed process)."""
        assert self.controller is not None
        self.controller.recorder.shipper.stop()
        self.controller.recorder.spool.close()
        self.controller.store.close()
        self.controller = None

    def send(self, *alerts: dict[str, Any]) -> list[Any]:
        assert self.controller is not None
        return self.controller.receive(parse_notification(notification(*alerts)))

    def settle(self, done: Callable[[], bool] | None = None, timeout_s: float = 60) -> None:
        """Reconcile until `done()` (default: no open action)."""
        assert self.controller is not None
        done = done or (lambda: not self.controller.store.open_actions())
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"open actions: {self.controller.store.open_actions()}"
            time.sleep(min(self.controller.reconcile_once(), 0.02))

    def starts(self) -> int:
        path = self.tmp_path / "control" / "starts"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def records(self) -> list[dict[str, Any]]:
        assert self.controller is not None
        spool = self.controller.recorder.spool
        deadline = time.monotonic() + 30
        while spool.pending_bytes() > 0:  # the recorder's own thread ships the spool to the store
            assert time.monotonic() < deadline, "the audit spool was not shipped"
            time.sleep(0.02)
        rows = self.audit_store.rows(RowQuery(kinds=("controller_action",)))
        return [json.loads(row.record) for row in rows]

    def deploy_canary(self, version: str) -> None:
        change_serving(self.target, "deploy", lambda s: deploy(s, self.target.registry, version, 20, operator="me"))


@pytest.fixture
def harness(tmp_path: Path, audit_store: SqliteStore) -> Iterator[Harness]:
    h = Harness(tmp_path, audit_store)
    yield h
    if h.controller is not None:
        h.controller.close()


def test_a_canary_alert_rolls_the_canary_back_once_however_often_alertmanager_repeats_it(harness, versions):
    harness.deploy_canary(versions[0])
    harness.start()
    error = alert("CanaryErrorRateHigh", "rollback", model_version=versions[0], variant="canary")
    (decided,) = harness.send(error)
    assert decided.kind == "rollback" and decided.phase == "pending"
    harness.settle()
    assert harness.send(error) == [] and harness.send(error) == []  # repeats: remembered, nothing new
    harness.settle()
    state = read_state(harness.config.serving.state_dir)
    assert state.canary is None and state.stable.version == versions[1]
    assert [h.action for h in state.history] == ["seed", "deploy", "rollback"]
    assert state.history[-1].by == "kfloop-controller" and "CanaryErrorRateHigh" in state.history[-1].note
    assert harness.controller.store.alert(key_of(error)) == {
        "key": key_of(error),
        "status": "firing",
        "notifications": 3,
        "action_id": decided.id,
    }
    (record,) = harness.records()
    assert (record["action"], record["outcome"], record["model_version"], record["variant"]) == (
        "rollback",
        "rolled_back",
        versions[0],
        "canary",
    )
    assert record["alerts"][0]["labels"]["model_version"] == versions[0]
    assert record["actor"] == "kfloop-controller" and record["action_id"] == decided.id
    assert verify_store(harness.audit_store).ok


def key_of(raw_alert: dict[str, Any]) -> str:
    """The dedup key: fingerprint and start time (to the microsecond; Alertmanager sends nanoseconds)."""
    return parse_notification(notification(raw_alert)).alerts[0].key


def test_a_new_firing_of_the_same_alert_is_a_new_action_that_finds_nothing_left_to_roll_back(harness, versions):
    harness.deploy_canary(versions[0])
    harness.start()
    harness.send(alert("CanaryLatencyHigh", "rollback", variant="canary", model_version=versions[0]))
    harness.settle()
    later = alert("CanaryLatencyHigh", "rollback", starts_at=T0 + timedelta(hours=1), model_version=versions[0])
    (second,) = harness.send(later)
    harness.settle()
    done = harness.controller.store.action(second.id)
    assert (done.outcome, done.reason) == ("nothing_to_do", "there is no canary to roll back: nothing was changed")
    assert [h.action for h in read_state(harness.config.serving.state_dir).history].count("rollback") == 1


def test_an_alert_about_another_version_than_the_running_canary_leaves_the_canary(harness, versions):
    harness.deploy_canary(versions[0])
    harness.start()
    (action,) = harness.send(alert("CanaryErrorRateHigh", "rollback", model_version="v20000101T000000Z-00000000"))
    harness.settle()
    assert harness.controller.store.action(action.id).outcome == "nothing_to_do"
    assert read_state(harness.config.serving.state_dir).canary.version == versions[0]


def test_drift_and_decay_together_start_one_run_whose_blessed_result_becomes_the_canary(harness, versions):
    harness.start()
    (action,) = harness.send(DRIFT, DECAY)
    assert action.kind == "retrain" and len(action.alerts) == 2
    harness.settle()
    done = harness.controller.store.action(action.id)
    assert (done.outcome, harness.starts()) == ("deployed", 1), done.reason
    state = read_state(harness.config.serving.state_dir)
    assert state.canary.version == done.model_version and state.canary.percent == 10
    assert done.model_version not in versions and state.stable.version == versions[1]
    log = Path(done.details["run"]["log"]).read_text()
    assert f"registered {done.model_version} (blessed)" in log
    outcomes = [(r["action"], r["outcome"]) for r in harness.records()]
    assert outcomes == [("retrain", "started"), ("retrain", "deployed")]


def test_one_run_at_a_time_and_none_within_the_cooldown(harness, versions):
    (harness.tmp_path / "control").mkdir()
    (harness.tmp_path / "control" / "hold").touch()
    harness.start()
    (first,) = harness.send(DRIFT)
    harness.settle(lambda: harness.starts() == 1)
    (busy,) = harness.send(DECAY)  # in another notification, while the run is under way
    assert (busy.phase, busy.outcome) == (DONE, "busy") and first.id in busy.reason
    (harness.tmp_path / "control" / "hold").unlink()
    harness.settle()
    (cooling,) = harness.send(alert("ModelStale", "retrain", model_version="v1"))
    assert cooling.outcome == "cooldown" and "3600 s cooldown" in cooling.reason
    assert harness.starts() == 1
    counts = dict(((k, o), n) for k, o, n in harness.controller.store.outcome_counts())
    assert counts == {("retrain", "deployed"): 1, ("retrain", "busy"): 1, ("retrain", "cooldown"): 1}


def test_after_the_cooldown_a_new_trigger_starts_a_new_run(tmp_path, audit_store, versions):
    harness = Harness(tmp_path, audit_store, retrain__cooldown_s=0.2)
    harness.start()
    try:
        harness.send(DRIFT)
        harness.settle()
        time.sleep(0.3)
        (again,) = harness.send(alert("FeatureDriftHigh", "retrain", starts_at=T0 + timedelta(hours=2)))
        assert again.phase == "pending"
        harness.settle()
        assert harness.starts() == 2
        # a canary is running (the first run's): the second blessed version is not put in its place
        done = harness.controller.store.action(again.id)
        assert done.outcome == "not_deployed" and "is running" in done.reason
    finally:
        harness.controller.close()


def test_a_failed_run_is_recorded_and_deploys_nothing(tmp_path, audit_store, versions):
    from tests.support.controller import stand_in_command

    harness = Harness(tmp_path, audit_store, retrain__command=stand_in_command(tmp_path, "fail"))
    harness.start()
    try:
        (action,) = harness.send(DRIFT)
        harness.settle()
        done = harness.controller.store.action(action.id)
        assert done.outcome == "failed" and "exit code 3" in done.reason and "log: " in done.reason
        assert done.details["run_end"]["success"] is False
        assert "told to fail" in Path(done.details["run"]["log"]).read_text()
        assert read_state(harness.config.serving.state_dir).canary is None
    finally:
        harness.controller.close()


def test_an_unblessed_result_is_not_deployed(tmp_path, audit_store, versions):
    from tests.support.controller import stand_in_command

    harness = Harness(tmp_path, audit_store, retrain__command=stand_in_command(tmp_path, "no-bless"))
    harness.start()
    try:
        (action,) = harness.send(DRIFT)
        harness.settle()
        done = harness.controller.store.action(action.id)
        assert done.outcome == "not_deployed" and "no new deployable version" in done.reason
        assert done.details["run_end"]["success"] is True
    finally:
        harness.controller.close()


def test_a_run_over_its_timeout_is_stopped_and_failed(tmp_path, audit_store, versions):
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "hold").touch()  # never released: only the timeout ends it
    harness = Harness(tmp_path, audit_store, retrain__timeout_s=0.5)
    harness.start()
    try:
        (action,) = harness.send(DRIFT)
        harness.settle()
        done = harness.controller.store.action(action.id)
        assert done.outcome == "failed" and "exit code -15" in done.reason and "stop_sent" in done.details
    finally:
        harness.controller.close()


def test_paused_alerts_are_recorded_and_nothing_is_done_until_resumed(harness, versions):
    harness.deploy_canary(versions[0])
    harness.start()
    harness.controller.pause("alice", "investigating the feature pipeline")
    harness.crash()  # the switch is in the state: it holds across a restart
    harness.start()
    (paused,) = harness.send(alert("CanaryErrorRateHigh", "rollback", model_version=versions[0]))
    (paused_retrain,) = harness.send(DRIFT)
    assert (paused.outcome, paused_retrain.outcome) == ("paused", "paused")
    assert read_state(harness.config.serving.state_dir).canary.version == versions[0] and harness.starts() == 0
    assert harness.controller.store.alert(key_of(DRIFT))["action_id"] == paused_retrain.id
    harness.controller.resume("alice", "fixed")
    (acted,) = harness.send(alert("CanaryErrorRateHigh", "rollback", starts_at=T0 + timedelta(minutes=1)))
    harness.settle()
    assert harness.controller.store.action(acted.id).outcome == "rolled_back"
    outcomes = [(r["action"], r["outcome"], r["actor"]) for r in harness.records()]
    assert outcomes == [
        ("pause", "paused", "alice"),
        ("rollback", "paused", "kfloop-controller"),
        ("retrain", "paused", "kfloop-controller"),
        ("resume", "resumed", "alice"),
        ("rollback", "rolled_back", "kfloop-controller"),
    ]


def test_alerts_that_ask_for_nothing_or_for_an_unknown_action_are_recorded_only(harness, versions):
    harness.start()
    recorded, unknown = harness.send(
        alert("FeedbackStalled", "none"),
        alert("SomethingNew", "promote-to-mars"),
        alert("Resolved", "retrain", status="resolved"),
    )
    assert (recorded.kind, recorded.outcome) == ("none", "recorded")
    assert (unknown.kind, unknown.outcome) == ("none", "unsupported") and "promote-to-mars" in unknown.reason
    assert harness.controller.store.open_actions() == [] and harness.starts() == 0


def test_a_decided_action_survives_a_crash_before_any_step_and_is_carried_out_once(harness, versions):
    harness.deploy_canary(versions[0])
    harness.start()
    (action,) = harness.send(alert("CanaryErrorRateHigh", "rollback"))
    harness.crash()  # before the worker took a single step
    harness.start()
    assert [a.id for a in harness.controller.store.open_actions()] == [action.id]
    harness.settle()
    assert harness.controller.store.action(action.id).outcome == "rolled_back"
    assert harness.send(alert("CanaryErrorRateHigh", "rollback")) == []  # still remembered


def test_a_rollback_done_but_not_recorded_before_a_crash_is_not_done_again(harness, versions):
    harness.deploy_canary(versions[0])
    harness.start()
    (action,) = harness.send(alert("CanaryErrorRateHigh", "rollback"))
    harness.controller.kinds["rollback"].step(action, False, action.created_at)  # acted; the step is not saved
    harness.crash()
    harness.start()
    harness.settle()
    assert harness.controller.store.action(action.id).outcome == "nothing_to_do"
    assert [h.action for h in read_state(harness.config.serving.state_dir).history].count("rollback") == 1


def test_a_run_that_outlived_the_controller_is_waited_for(harness, versions):
    (harness.tmp_path / "control").mkdir()
    (harness.tmp_path / "control" / "hold").touch()
    harness.start()
    (action,) = harness.send(DRIFT)
    harness.settle(lambda: harness.controller.store.action(action.id).phase == "running")
    harness.crash()
    harness.start()
    harness.controller.reconcile_once()
    assert harness.controller.store.action(action.id).phase == "running"  # still going: waited for
    (harness.tmp_path / "control" / "hold").unlink()
    harness.settle()
    assert harness.controller.store.action(action.id).outcome == "deployed" and harness.starts() == 1


def test_a_run_that_ended_while_the_controller_was_down_is_collected(harness, versions):
    harness.start()
    (action,) = harness.send(DRIFT)
    harness.settle(lambda: harness.controller.store.action(action.id).phase == "running")
    run_dir = Path(harness.controller.store.action(action.id).details["run"]["run_dir"])
    harness.crash()
    deadline = time.monotonic() + 60
    while not (run_dir / "exit.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    harness.start()
    harness.settle()
    assert harness.controller.store.action(action.id).outcome == "deployed" and harness.starts() == 1


def test_a_run_decided_but_never_launched_is_launched_after_a_restart(harness, versions):
    harness.start()
    (action,) = harness.send(DRIFT)
    harness.controller.advance(action, False)  # pending -> starting: recorded, not launched
    assert harness.controller.store.action(action.id).phase == "starting"
    harness.crash()
    harness.start()
    harness.settle()
    assert harness.controller.store.action(action.id).outcome == "deployed" and harness.starts() == 1


def test_the_seeded_state_is_the_one_kfloop_deploy_uses(harness, versions):
    """The controller and `kfloop deploy` share the state: the controller sees a canary deployed by hand."""
    harness.start()
    harness.deploy_canary(versions[0])
    state = load_or_seed(harness.config.serving.state_dir, MANIFEST, harness.target.registry)
    assert state.canary.version == versions[0]


def test_kfloop_audit_pull_and_verify_take_controller_actions(harness, versions, capsys):
    from kfloop.cli.commands import audit

    harness.deploy_canary(versions[0])
    harness.start()
    harness.send(alert("CanaryErrorRateHigh", "rollback", model_version=versions[0]), DRIFT)
    harness.settle()
    records = harness.records()
    store_url = f"sqlite:///{harness.tmp_path / 'audit.db'}"
    common = {"config": None, "store_url": store_url, "model_version": None, "user": None}
    for fmt in ("jsonl", "csv", "parquet"):
        out = harness.tmp_path / f"actions.{fmt}"
        pulled = argparse.Namespace(
            **common, since="2000-01-01", until="2100-01-01", kind=["controller_action"], format=fmt, output=str(out)
        )
        assert audit.pull(pulled) == 0
        checked = argparse.Namespace(**common, file=str(out), format=None, allow_gaps=False)
        assert audit.verify(checked) == 0, capsys.readouterr()
    lines = [json.loads(line) for line in (harness.tmp_path / "actions.jsonl").read_text().splitlines()]
    assert [line["request_id"] for line in lines] == [r["action_id"] for r in records]
    assert {line["record"]["outcome"] for line in lines} == {"rolled_back", "started", "deployed"}
    assert audit.verify(argparse.Namespace(**common, file=None, format=None, allow_gaps=False)) == 0

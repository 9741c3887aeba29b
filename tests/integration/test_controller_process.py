"""`kfloop controller` as a real process, with the real audit sink: killed with SIGKILL while a retraining run
(a real subprocess) is under way and started again, it neither starts the run twice nor loses it: the run is
waited for, its blessed result becomes the canary. Drift and decay alerts, repeated, start one run.
`kfloop pause | resume` flip the kill switch; `kfloop audit pull --kind controller_action` and
`kfloop audit verify` read what it did."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfloop.deploy import read_state
from kfloop.registry import ModelRegistry
from serving.common.process import ServiceProcess
from tests.integration.test_audit_sink_server import sink_server
from tests.support.controller import T0, TOKEN, alert, notification, register, write_config

pytestmark = [pytest.mark.integration, pytest.mark.serving]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


def controller(tmp_path: Path, config_path: Path, name: str) -> ServiceProcess:
    log = tmp_path / f"{name}.log"
    return ServiceProcess("kfloop", ["controller", "--config", str(config_path)], log_path=log).start(timeout_s=120)


def send(process: ServiceProcess, *alerts: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{process.url}/v1/alerts", json=notification(*alerts), headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def action(process: ServiceProcess, action_id: str) -> dict[str, Any]:
    return httpx.get(f"{process.url}/v1/actions/{action_id}", headers=AUTH, timeout=30).json()


def wait_for(predicate: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kfloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kfloop", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def starts(tmp_path: Path) -> int:
    path = tmp_path / "control" / "starts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_controller_killed_mid_run_neither_repeats_nor_loses_it(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    versions = [register(registry, tmp_path / "models", n) for n in range(2)]
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "hold").touch()  # the run waits until the test lets it go
    drift = alert("FeatureDriftHigh", "retrain", feature="user_feature_0", model_version=versions[1])
    decay = alert("OnlineRewardDecay", "retrain", model_version=versions[1], variant="stable")
    db = tmp_path / "audit.db"
    with sink_server(tmp_path, f"sqlite:///{db}") as sink_url:
        config_path, config = write_config(tmp_path, audit__sink_url=sink_url, reconcile_interval_s=0.1)
        first = controller(tmp_path, config_path, "first")
        try:
            (run,) = send(first, drift)["actions"]
            (busy,) = send(first, decay)["actions"]
            assert busy["outcome"] == "busy"
            wait_for(lambda: starts(tmp_path) == 1 and action(first, run["id"])["phase"] == "running", "the run")
        finally:
            first.kill()  # SIGKILL while the run is under way
        second = controller(tmp_path, config_path, "second")
        try:
            assert send(second, drift, decay)["new"] == 0, "repeats after the restart are remembered"
            assert action(second, run["id"])["phase"] == "running", "the surviving run is waited for"
            (tmp_path / "control" / "hold").unlink()
            wait_for(lambda: action(second, run["id"])["phase"] == "done", "the run to be collected")
            done = action(second, run["id"])
            assert done["outcome"] == "deployed" and starts(tmp_path) == 1, done
            canary = read_state(config.serving.state_dir).canary
            assert (canary.version, canary.percent) == (done["model_version"], 10)
            check_the_kill_switch(tmp_path, second, config, canary.version)
        finally:
            second.stop()  # SIGTERM: the spool is shipped to the sink before it exits
    check_the_audit_trail(db, run["id"])


def check_the_kill_switch(tmp_path: Path, process: ServiceProcess, config: Any, canary: str) -> None:
    paused = kfloop("pause", "--url", process.url, "--config", str(tmp_path / "controller.yaml"), "--reason", "test")
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    error = alert("CanaryErrorRateHigh", "rollback", model_version=canary, variant="canary")
    (ignored,) = send(process, error)["actions"]
    assert ignored["outcome"] == "paused" and read_state(config.serving.state_dir).canary.version == canary
    resumed = kfloop("resume", "--url", process.url, "--config", str(tmp_path / "controller.yaml"))
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    (rollback,) = send(process, {**error, "startsAt": (T0 + timedelta(minutes=5)).isoformat()})["actions"]
    wait_for(lambda: action(process, rollback["id"])["phase"] == "done", "the rollback")
    assert action(process, rollback["id"])["outcome"] == "rolled_back"
    assert read_state(config.serving.state_dir).canary is None


def check_the_audit_trail(db: Path, run_id: str) -> None:
    store = ["--store-url", f"sqlite:///{db}"]
    window = ["--since", "2000-01-01", "--until", "2100-01-01"]
    pulled = kfloop("audit", "pull", *store, *window, "--kind", "controller_action")
    assert pulled.returncode == 0, pulled.stderr
    records = [json.loads(line)["record"] for line in pulled.stdout.splitlines()]
    outcomes = sorted((r["action"], r["outcome"]) for r in records)
    assert outcomes == [
        ("pause", "paused"),
        ("resume", "resumed"),
        ("retrain", "busy"),
        ("retrain", "deployed"),
        ("retrain", "started"),
        ("rollback", "paused"),
        ("rollback", "rolled_back"),
    ], outcomes
    assert [r["action_id"] for r in records if r["action"] == "retrain" and r["outcome"] != "busy"] == [run_id] * 2
    verified = kfloop("audit", "verify", *store)
    assert verified.returncode == 0, verified.stdout + verified.stderr

"""Alerts that act, against the real Prometheus and Alertmanager that `kfloop up` runs (issue 18's acceptance):

- Alertmanager, with the configuration `kfloop up` gives it, silences a canary's latency alert while the same
  canary's error alert fires, and only that canary's;
- a canary that answers errors (a forced deploy of a broken version) is rolled back by the controller; printed: the
  time from its first bad answer to the rollback, and the requests it answered;
- an input-distribution shift fires FeatureDriftHigh and a preference shift fires OnlineRewardDecay, and each
  starts exactly one retraining run (the training stand-in, a real program) although Alertmanager repeats its
  notifications, and when both fire together.

The drift and decay series come from a small exporter process (tests/support/metric_exporter.py, a part of the
test's system, scraped through the target files like every part) rather than from the predictor and the joiner:
the predictor's drift needs its window of shown items, the joiner's reference CTR its reference window and a
settling time, which take minutes; the rules, Prometheus, Alertmanager and the controller are the real ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kfloop.deploy import read_state
from kfloop.processes import free_port, stop_process
from kfloop.registry import ModelRegistry
from serving.local.system.config import SystemPaths, command_line, effective_config, load_system_config
from tests.support import controller as controller_support
from tests.support import testbed
from tests.support.metric_exporter import system_part, write_spec
from tests.support.system import (
    Controller,
    Prometheus,
    kfloop,
    live_status,
    part_of,
    system_data,
    wait_for,
    write_system,
)

pytestmark = [pytest.mark.integration, pytest.mark.serving]

MODEL = "kfloop-ranker"
LOOP = ["controller", "alertmanager", "prometheus"]


def up(tmp_path: Path, config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """`kfloop up` on the config (state under tmp_path/state); the arguments naming it, and its live status."""
    where = ["--config", str(write_system(tmp_path / "system.yaml", config)), "--state-dir", str(tmp_path / "state")]
    began = time.monotonic()
    started = kfloop("up", *where, timeout=900)
    print(f"\nkfloop up: {time.monotonic() - began:.1f} s\n{started.stdout}")
    assert started.returncode == 0, started.stdout + started.stderr
    return where, live_status(where)


@pytest.fixture
def system(tmp_path: Path):
    """Runs `kfloop up` when the test calls it; `kfloop down` at the end whatever happened."""
    started: list[list[str]] = []

    def start(config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        where, live = up(tmp_path, config)
        started.append(where)
        return where, live

    yield start
    for where in started:
        kfloop("down", *where, timeout=300)


def url_of(live: dict[str, Any], name: str) -> str:
    return f"http://127.0.0.1:{part_of(live, name)['port']}"


def controller_of(live: dict[str, Any], state: Path) -> Controller:
    return Controller(url_of(live, "controller"), state / "controller" / "token")


# -- Alertmanager's inhibition -------------------------------------------------------------------------------------
def test_alertmanager_silences_a_canary_latency_alert_while_its_error_alert_fires(tmp_path: Path) -> None:
    config = load_system_config(None, tmp_path / "state")
    part = next(p for p in config.parts if p.name == "alertmanager")
    ports = config.ports() | {"alertmanager": free_port(), "controller": free_port()}  # nobody answers as controller
    argv = command_line(part, config.state_dir, ports)
    argv += [part.config_flag, str(effective_config(part, SystemPaths(config.state_dir), ports))]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['alertmanager']}"
    try:
        wait_for(lambda: _answers(f"{url}/-/ready"), "Alertmanager ready", 30)
        alerts = [
            _am_alert("CanaryErrorRateHigh", "v1"),
            _am_alert("CanaryLatencyHigh", "v1"),
            _am_alert("CanaryLatencyHigh", "v2"),  # another canary's: not silenced
        ]
        assert httpx.post(f"{url}/api/v2/alerts", json=alerts, timeout=5).status_code == 200

        def states() -> dict[tuple[str, str], list[str]]:
            listed = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
            return {
                (a["labels"]["alertname"], a["labels"]["model_version"]): a["status"]["inhibitedBy"] for a in listed
            }

        seen = wait_for(lambda: (s := states()) and len(s) == 3 and s, "the three alerts", 10)
        assert seen[("CanaryLatencyHigh", "v1")], seen  # inhibited by the error alert
        assert not seen[("CanaryLatencyHigh", "v2")] and not seen[("CanaryErrorRateHigh", "v1")], seen
    finally:
        stop_process(process, 10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _am_alert(name: str, version: str) -> dict[str, Any]:
    labels = {"alertname": name, "variant": "canary", "model_version": version, "action": "rollback"}
    return {"labels": labels, "annotations": {"summary": name}}


# -- drift and decay start one retraining run each ---------------------------------------------------------------
def drift(version: str, psi: float) -> list[dict[str, Any]]:
    labels = {"model_version": version, "variant": "stable", "method": "psi"}
    return [{"name": "kfloop_feature_drift", "labels": labels | {"feature": "user_feature_0"}, "value": psi}]


def decay(version: str, ctr: float, reference: float = 0.05) -> list[dict[str, Any]]:
    """The joiner's series of a stable version earning `ctr` online against its own reference CTR."""
    labels = {"model_version": version, "variant": "stable"}
    return [
        {"name": "kfloop_joiner_impressions_total", "labels": labels, "rate": 200.0},
        {"name": "kfloop_joiner_clicks_total", "labels": labels, "rate": 200.0 * ctr},
        {"name": "kfloop_joiner_reference_ctr", "labels": {"model_version": version}, "value": reference},
    ]


def loop_with_exporter(state: Path, control: Path, spec: Path) -> dict[str, Any]:
    """Controller, Alertmanager and Prometheus as `kfloop up` runs them, and the exporter as one more part. The
    controller's retraining run is the training stand-in (held while `control/hold` exists), with no cooldown (so a
    run it does not start was refused for being busy, not for the cooldown); Alertmanager repeats every 2 s."""
    config = system_data(keep=LOOP, start_timeout_s=120)
    config["parts"].insert(0, system_part(spec, free_port()))
    stand_in = [sys.executable, str(controller_support.STAND_IN), str(state / "registry"), str(control), "no-bless"]
    part_of(config, "controller")["config_overrides"] |= {
        "retrain.command": stand_in,
        "retrain.cooldown_s": 0,
        "retrain.poll_interval_s": 0.2,
        "reconcile_interval_s": 0.2,
    }
    part_of(config, "alertmanager")["config_overrides"] = {"route.repeat_interval": "2s"}
    return config


def starts(tmp_path: Path) -> int:
    path = tmp_path / "control" / "starts"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.timeout(600)
def test_drift_and_decay_each_start_exactly_one_retraining_run(tmp_path: Path, system) -> None:
    state = tmp_path / "state"
    registry = ModelRegistry(state / "registry")
    controller_support.register(registry, tmp_path / "models", 1)  # what serves before the runs
    (tmp_path / "control").mkdir()
    spec = tmp_path / "series.json"
    write_spec(spec, [])
    where, live = system(loop_with_exporter(state, tmp_path / "control", spec))
    prometheus, controller = Prometheus(url_of(live, "prometheus")), controller_of(live, state)
    db = state / "controller" / "state.db"
    wait_for(lambda: prometheus.targets("kfloop-exporter"), "Prometheus to find the exporter", 30)

    def phase(what: str, series: list[dict[str, Any]], alerts: list[str], runs: int) -> None:
        (tmp_path / "control" / "hold").touch()  # each run waits until the phase is over
        seen_before = controller.alert_notifications(db)
        began = time.monotonic()
        write_spec(spec, series)
        for name in alerts:
            wait_for(lambda n=name: prometheus.alerts(n), f"{name} to fire", 90, 0.2)
            print(f"{what}: {name} firing after {time.monotonic() - began:.1f} s")
        wait_for(lambda: starts(tmp_path) == runs, f"retraining run {runs}", 30)
        print(f"{what}: retraining run {runs} started {time.monotonic() - began:.1f} s after the shift")

        def repeated() -> bool:  # the first notification and two repeats of each alert reached the controller
            now = controller.alert_notifications(db)
            return all(now.get(n, 0) - seen_before.get(n, 0) >= 3 for n in alerts)

        wait_for(repeated, "Alertmanager's repeated notifications", 30, 0.2)
        assert starts(tmp_path) == runs, f"{what}: a repeat or a second alert started another run"
        (tmp_path / "control" / "hold").unlink()
        wait_for(lambda: not _open(controller), "the run to end", 60)
        write_spec(spec, [])  # the shift is over: the alerts resolve
        for name in alerts:
            wait_for(lambda n=name: not prometheus.alerts(n), f"{name} to resolve", 30, 0.2)

    phase("drift", drift("v-1", psi=0.6), ["FeatureDriftHigh"], runs=1)
    phase("decay", decay("v-1", ctr=0.01), ["OnlineRewardDecay"], runs=2)
    phase("both", drift("v-2", psi=0.6) + decay("v-2", ctr=0.01), ["FeatureDriftHigh", "OnlineRewardDecay"], runs=3)

    retrains = controller.actions("retrain")
    outcomes = Counter(a["outcome"] for a in retrains)
    print(f"retrain actions: {dict(outcomes)}")
    assert outcomes == {"not_deployed": 3, "busy": 1}, retrains  # the stand-in registered unblessed versions
    busy = next(a for a in retrains if a["outcome"] == "busy")
    assert {a["alertname"] for a in busy["alerts"]} <= {"FeatureDriftHigh", "OnlineRewardDecay"}
    shown = kfloop("status", *where).stdout
    print(shown)
    assert "retrain" in shown and "busy" in shown


def _open(controller: Controller) -> bool:
    return any(a["phase"] != "done" for a in controller.actions("retrain"))


# -- a canary answering errors is rolled back -----------------------------------------------------------------------
class Traffic:
    """Rankings sent to the front door one after another (about 20 a second), each answer's status counted."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/v1/models/{MODEL}:predict"
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                body = {"instances": [{"user_id": f"u-{n % 50}", "request_id": f"alerts-{n}"}]}
                try:
                    self.statuses[client.post(self.url, json=body).status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1
                self.stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def canary_answers(router_url: str) -> float:
    """The ranking requests the router sent to a canary and that it answered with a 5xx (the router's own count)."""
    text = httpx.get(f"{router_url}/metrics", timeout=2).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kfloop_ranking_requests_total"
        and sample.labels.get("variant") == "canary"
        and sample.labels.get("code", "").startswith("5")
    )


def first_time(condition: Any, what: str, timeout_s: float) -> float:
    """The monotonic time at which `condition` first held (looked at every 50 ms)."""
    wait_for(condition, what, timeout_s)
    return time.monotonic()


def serving_system() -> dict[str, Any]:
    """The default system's serving part and monitoring loop, with one predictor per version and no explainer (the
    host's two cores go to what is measured)."""
    config = system_data(keep=["features-apply", "serving", *LOOP])
    part_of(config, "serving")["config_overrides"] |= {"stack.predictor_replicas": 1, "stack.run_explainer": False}
    return config


@pytest.mark.timeout(1800)  # the testbed, the stack and a canary predictor start (TensorFlow) on a busy host
def test_a_canary_answering_errors_is_rolled_back_by_the_controller(tmp_path: Path, system) -> None:
    from tests.support.contract_model import ContractSpec, register

    state = tmp_path / "state"
    bed = testbed.build(state, versions=1, use_obd_sample=True)  # the stable version, {state}/registry and features
    broken_spec = ContractSpec(seed=7, fail_above_candidates=2)
    broken = register(ModelRegistry(bed.registry_uri), tmp_path / "work", broken_spec, blessed=False)
    where, live = system(serving_system())
    prometheus, controller = Prometheus(url_of(live, "prometheus")), controller_of(live, state)
    endpoints = json.loads((state / "serving" / "endpoints.json").read_text())
    wait_for(lambda: len(prometheus.targets("kfloop-predictor")) == 1, "Prometheus to scrape the predictor", 30)

    with Traffic(endpoints["transformer"]) as traffic:
        deploy = kfloop(
            "deploy", broken, "--canary", "50", "--force", "--reason", "test: a broken version",
            "--config", part_of(live, "serving")["config"],
        )  # fmt: skip
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        deployed = time.monotonic()
        first_bad = first_time(lambda: canary_answers(endpoints["router"]) > 0, "the canary's first answer", 600)
        print(f"the broken canary {broken} answered first {first_bad - deployed:.1f} s after its deploy (its start)")
        wait_for(lambda: len(prometheus.targets("kfloop-predictor")) == 2, "Prometheus to scrape the canary", 30)
        rolled_back = first_time(lambda: read_state(state / "serving").canary is None, "the rollback", 120)
        answered = canary_answers(endpoints["router"])
        print(
            f"rolled back {rolled_back - first_bad:.1f} s after the canary's first bad answer (target: 10 s at 1 s "
            f"scrape and evaluation intervals); it answered {answered:g} requests with errors by then"
        )
        wait_for(lambda: len(prometheus.targets("kfloop-predictor")) == 1, "the canary's target to go", 120)
    print(f"answers the client saw: {dict(traffic.statuses)} (the router retries a failing canary's on stable)")
    assert rolled_back - first_bad < 60  # generous: the target is 10 s, this host may be busy with other suites

    rollbacks = controller.actions("rollback")
    (action,) = [a for a in rollbacks if a["outcome"] == "rolled_back"]
    assert all(a["outcome"] == "nothing_to_do" for a in rollbacks if a is not action), rollbacks
    assert action["model_version"] == broken and action["variant"] == "canary"
    assert {a["alertname"] for a in action["alerts"]} == {"CanaryErrorRateHigh"}
    assert read_state(state / "serving").stable is not None
    shown = kfloop("status", *where).stdout
    print(shown)
    assert "rolled_back" in shown
